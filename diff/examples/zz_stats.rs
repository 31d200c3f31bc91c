use xsave_diff::generate::{generate, Target};
use xsave_emu::predict;
use xsave_native::runner::protection_key;
fn trans(v: &[[u8; 17]]) -> usize {
    v.windows(2)
        .map(|w| {
            (1..17).filter(|&k| w[0][k] != w[1][k]).count().min(1) + (w[0][0] != w[1][0]) as usize
        })
        .sum()
}
fn main() {
    xsave_native::host::request_amx_permission().unwrap();
    let mut runner = xsave_native::runner::Runner::new().unwrap();
    let t = Target {
        model: runner.model().clone(),
        control: runner.control(),
    };
    let mut keys = vec![];
    let mut all = vec![];
    for i in 0..2000 {
        let c = generate(&t, 1, i);
        let k = protection_key(&c);
        let k: [u8; 17] = k[..17].try_into().unwrap();
        all.push(k);
        let Ok(p) = predict(&t.model, &c) else {
            continue;
        };
        if p.fault.is_some() || !runner.run(&c).is_ok_and(|o| o.fault.is_none()) {
            continue;
        }
        keys.push(k);
    }
    let mut h = std::collections::BTreeMap::new();
    for k in &keys {
        *h.entry(k[..6].to_vec()).or_insert(0) += 1;
    }
    for (k, n) in &h {
        println!("{k:?} {n}");
    }
    for (name, set) in [("quiet", &keys), ("all", &all)] {
        let mut asc = set.clone();
        for c in asc.chunks_mut(16) {
            c.sort();
        }
        let mut alt = set.clone();
        for (i, c) in alt.chunks_mut(16).enumerate() {
            c.sort();
            if i % 2 == 1 {
                c.reverse();
            }
        }
        println!(
            "{name}: {} cases; transitions unsorted {} asc {} alternating {}",
            set.len(),
            trans(set),
            trans(&asc),
            trans(&alt)
        );
    }
}
