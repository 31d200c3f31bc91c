//! `XState::align_with` (a speed measure, not a rule): the state's contents
//! move within its buffer so that a component starts at a host address's
//! offset in a 64-byte line; what the state holds does not change.
use xsave_emu::model::CpuModel;
use xsave_emu::state::XState;

#[test]
fn align_with_moves_the_contents_and_changes_nothing_else() {
    let model = CpuModel::builtin("xeon-amx-vm").expect("built-in model");
    let mut st = XState::reset(&model);
    for (i, seed) in [(2usize, 3u8), (7, 5), (17, 7), (18, 11)] {
        for (k, b) in st.comp_mut(i).iter_mut().enumerate() {
            *b = seed.wrapping_mul(k as u8 | 1).wrapping_add(k as u8 >> 3);
        }
    }
    let before = st.clone();
    for (i, phase) in [(18usize, 48usize), (18, 0), (2, 17), (18, 63), (7, 16)] {
        st.align_with(i, 0x1000 + phase);
        assert_eq!(st.comp(i).as_ptr() as usize % 64, phase, "component {i}");
        assert_eq!(st, before, "component {i} to {phase}");
        for j in [2, 5, 6, 7, 17, 18] {
            assert_eq!(st.comp(j), before.comp(j), "component {j}");
        }
    }
    // Back to power-on in place: the moved buffer gives the fresh state.
    st.reset_in_place(&model);
    assert_eq!(st, XState::reset(&model));
}
