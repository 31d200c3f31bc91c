//! The full state the bench's round trip and the speed profile share: one
//! image, so the profile's instruction counts are the bench's.
use xsave_emu::{layout, CpuModel, Xfeatures};

/// A standard-format image of `model`'s XCR0 size with every component of
/// `bv` non-init and loadable: valid FCW, MXCSR, PKRU (key 0 left accessible),
/// TILECFG (palette 1, eight 16 x 64-byte tiles).
pub fn full_state(model: &CpuModel, xcr0: u64, bv: u64) -> Vec<u8> {
    let lay = layout::standard(model, Xfeatures::from_bits_retain(xcr0));
    let mut img = vec![0u8; lay.size as usize];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut fill = |b: &mut [u8]| {
        for v in b {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *v = x as u8;
        }
    };
    img[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
    img[4] = 0xFF;
    for k in 0..8 {
        fill(&mut img[32 + 16 * k..42 + 16 * k]);
    }
    img[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
    fill(&mut img[160..416]);
    for s in &lay.slots {
        let (o, n) = (s.offset as usize, s.size as usize);
        match s.index {
            9 => img[o..o + 4].copy_from_slice(&0x5555_5554u32.to_le_bytes()),
            17 => {
                img[o] = 1;
                for t in 0..8 {
                    img[o + 16 + 2 * t..o + 18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
                    img[o + 48 + t] = 16;
                }
            }
            _ => fill(&mut img[o..o + n]),
        }
    }
    img[512..520].copy_from_slice(&bv.to_le_bytes());
    img
}
