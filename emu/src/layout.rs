//! Where each component lives in an XSAVE area: the standard format (offsets from
//! CPUID.(0DH,i).EBX) and the compacted format (SDM1 §13.4.3).

use crate::component::Xfeatures;
use crate::model::CpuModel;

/// Size of the legacy region plus the XSAVE header.
pub const EXTENDED_START: u32 = 576;
/// Offset of the XSAVE header.
pub const HEADER: usize = 512;

/// One extended component's place in an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub index: usize,
    pub offset: u32,
    pub size: u32,
}

/// The extended-region slots of an area for a given mask, and its total size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub compacted: bool,
    pub slots: Vec<Slot>,
    pub size: u32,
}

impl Layout {
    pub fn slot(&self, i: usize) -> Option<Slot> {
        self.slots.iter().copied().find(|s| s.index == i)
    }
}

/// Standard format for the user components of `mask` that the model supports.
/// The size is that of an area holding every such component: the largest
/// offset + size, at least 576 (CPUID.(0DH,0):EBX for XCR0 = `mask`).
pub fn standard(model: &CpuModel, mask: Xfeatures) -> Layout {
    let slots: Vec<Slot> = standard_slots(model, mask).collect();
    let size = slots
        .iter()
        .map(|s| s.offset.saturating_add(s.size))
        .fold(EXTENDED_START, u32::max);
    Layout {
        compacted: false,
        slots,
        size,
    }
}

/// Compacted format for `mask` (SDM1 §13.4.3): the first component at 576, each
/// next one right after the previous present one, rounded up to 64 when
/// CPUID.(0DH,i).ECX[1] = 1. Components the model does not support take no space.
pub fn compacted(model: &CpuModel, mask: Xfeatures) -> Layout {
    let slots: Vec<Slot> = compacted_slots(model, mask).collect();
    let size = slots
        .last()
        .map_or(EXTENDED_START, |s| s.offset.saturating_add(s.size));
    Layout {
        compacted: true,
        slots,
        size,
    }
}

/// The slots of [`standard`], without building the layout.
pub fn standard_slots(model: &CpuModel, mask: Xfeatures) -> impl Iterator<Item = Slot> + '_ {
    mask.indices().filter(|&i| i >= 2).filter_map(move |i| {
        model.component(i).filter(|c| !c.supervisor).map(|c| Slot {
            index: i,
            offset: c.offset,
            size: c.size,
        })
    })
}

/// The slots of [`compacted`], without building the layout.
pub fn compacted_slots(model: &CpuModel, mask: Xfeatures) -> impl Iterator<Item = Slot> + '_ {
    let mut off = EXTENDED_START;
    mask.indices().filter(|&i| i >= 2).filter_map(move |i| {
        let c = model.component(i)?;
        if c.align64 {
            off = off.saturating_add(63) & !63;
        }
        let s = Slot {
            index: i,
            offset: off,
            size: c.size,
        };
        off = off.saturating_add(c.size);
        Some(s)
    })
}

/// The end of the bytes a standard-format area holds for `mask`: 576 (legacy
/// region and header) or the end of the highest user component of `mask`.
pub fn standard_end(model: &CpuModel, mask: Xfeatures) -> u32 {
    standard_slots(model, mask)
        .map(|s| s.offset.saturating_add(s.size))
        .fold(EXTENDED_START, u32::max)
}

/// The end of the bytes of the components `sub` in the compacted layout of
/// `format` (at least 576: legacy region and header).
pub fn compacted_end(model: &CpuModel, format: Xfeatures, sub: Xfeatures) -> u32 {
    compacted_slots(model, format)
        .filter(|s| sub.has(s.index))
        .map(|s| s.offset.saturating_add(s.size))
        .fold(EXTENDED_START, u32::max)
}

/// The end of the region an instruction operates on in the standard format: the
/// components of `mask`, where those in `skipped` (XFD-armed ones an instruction
/// leaves alone) count only up to where they start; at least 576. Intel silicon
/// probes the last byte of exactly this region (XSAVEOPT with RFBM = TILEDATA
/// armed faults at 2815, the byte before TILEDATA's offset 2816).
pub fn standard_region_end(model: &CpuModel, mask: Xfeatures, skipped: Xfeatures) -> u32 {
    region_end(standard_slots(model, mask), skipped)
}

/// The same in the compacted layout of `format`, for the components of `mask`.
pub fn compacted_region_end(
    model: &CpuModel,
    format: Xfeatures,
    mask: Xfeatures,
    skipped: Xfeatures,
) -> u32 {
    region_end(
        compacted_slots(model, format).filter(|s| mask.has(s.index)),
        skipped,
    )
}

/// The end of `slots`, those in `skipped` counted only up to their start; at
/// least 576.
fn region_end(slots: impl Iterator<Item = Slot>, skipped: Xfeatures) -> u32 {
    slots
        .map(|s| {
            if skipped.has(s.index) {
                s.offset
            } else {
                s.offset.saturating_add(s.size)
            }
        })
        .fold(EXTENDED_START, u32::max)
}
