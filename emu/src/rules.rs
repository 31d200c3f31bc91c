//! The SDM's rules for the XSAVE feature set, as data: each has a stable id,
//! one sentence in the SDM's words and its citation ("SDM1" = Intel SDM Vol. 1
//! Ch. 13, "SDM2" = the Vol. 2 instruction page, "SDM3" = Vol. 3). The
//! instruction files name the rule behind each fault they raise and each byte
//! they write or state they load, so that a verdict outside the envelope
//! ([`crate::envelope::check`]) names the rules an outcome breaks. The
//! freedoms the SDM grants are in [`crate::latitude`].
//!
//! Ids are `<instruction or scope>.<what>`; they are stable: findings and
//! corpus files name them.

use std::fmt;

/// One rule of the SDM.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub id: &'static str,
    pub sentence: &'static str,
    pub citation: &'static str,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)
    }
}

macro_rules! rules {
    ($($name:ident = $id:literal, $sentence:literal, $citation:literal;)*) => {
        $(pub static $name: Rule = Rule { id: $id, sentence: $sentence, citation: $citation };)*
        /// Every rule, in the order of this file.
        pub static RULES: &[&Rule] = &[$(&$name),*];
    };
}

rules! {
    // ---- Before anything runs: decoding, feature and mode gates (#UD, #NM, #GP) ----
    INSN_GP_TOO_LONG = "insn.gp-too-long",
        "An instruction longer than 15 bytes generates a general-protection exception (#GP(0)).",
        "SDM2 §2.3.11 (15-byte maximum); SDM3 §6.15 interrupt 13";
    INSN_UD_INVALID = "insn.ud-invalid-opcode",
        "An undefined opcode, and UD2, raise an invalid-opcode exception (#UD).",
        "SDM2 UD page; SDM3 §6.15 interrupt 6";
    INSN_UD_LOCK = "insn.ud-lock",
        "#UD if the LOCK prefix is used.",
        "SDM2 XSAVE/XRSTOR/XSAVEOPT/XSAVEC/XSAVES/XRSTORS/XGETBV/XSETBV/FXSAVE/FXRSTOR exceptions";
    XSAVE_UD_DISABLED = "xsave.ud-xsave-disabled",
        "#UD if CPUID.01H:ECX.XSAVE[bit 26] = 0 or CR4.OSXSAVE[bit 18] = 0.",
        "SDM2 XSAVE, XRSTOR, XSAVEOPT, XSAVEC, XSAVES, XRSTORS, XGETBV, XSETBV exceptions; SDM1 §13.3";
    XSAVEOPT_UD_NOT_ADVERTISED = "xsaveopt.ud-not-advertised",
        "#UD if CPUID.(EAX=0DH,ECX=1):EAX.XSAVEOPT[bit 0] = 0.",
        "SDM2 XSAVEOPT exceptions";
    XSAVEC_UD_NOT_ADVERTISED = "xsavec.ud-not-advertised",
        "#UD if CPUID.(EAX=0DH,ECX=1):EAX.XSAVEC[bit 1] = 0.",
        "SDM2 XSAVEC exceptions";
    XSAVES_UD_NOT_ADVERTISED = "xsaves.ud-not-advertised",
        "#UD if CPUID.(EAX=0DH,ECX=1):EAX.XSS[bit 3] = 0 (XSAVES and XRSTORS).",
        "SDM2 XSAVES, XRSTORS exceptions";
    XSAVE_NM_TS = "xsave.nm-ts",
        "#NM if CR0.TS[bit 3] = 1.",
        "SDM2 XSAVE, XRSTOR, XSAVEOPT, XSAVEC, XSAVES, XRSTORS exceptions";
    FXSAVE_UD_NO_FXSR = "fxsave.ud-no-fxsr",
        "#UD if CPUID.01H:EDX.FXSR[bit 24] = 0.",
        "SDM2 FXSAVE, FXRSTOR exceptions";
    FXSAVE_NM_TS_EM = "fxsave.nm-ts-or-em",
        "#NM if CR0.TS[bit 3] = 1 or CR0.EM[bit 2] = 1.",
        "SDM2 FXSAVE, FXRSTOR exceptions";
    XSAVES_GP_CPL = "xsaves.gp-cpl",
        "XSAVES and XRSTORS: #GP(0) if CPL > 0.",
        "SDM2 XSAVES, XRSTORS exceptions";

    // ---- The memory operand ----
    MEM_GP_NON_CANONICAL = "mem.gp-non-canonical",
        "#GP(0) if a memory address is in a non-canonical form; #SS(0) if a memory address referencing the SS segment is.",
        "SDM2 64-bit mode exceptions of every XSAVE-family instruction";
    XSAVE_GP_MISALIGNED = "xsave.gp-misaligned",
        "#GP(0) if a memory operand is not aligned on a 64-byte boundary, regardless of segment.",
        "SDM2 XSAVE, XRSTOR, XSAVEOPT, XSAVEC, XSAVES, XRSTORS exceptions";
    FXSAVE_GP_MISALIGNED = "fxsave.gp-misaligned",
        "#GP(0) if a memory operand is not aligned on a 16-byte boundary, regardless of segment.",
        "SDM2 FXSAVE, FXRSTOR exceptions";
    MEM_PF = "mem.pf",
        "#PF(fault-code) for a page fault on an access the instruction makes, with CR2 the faulting linear address and the error code's P, W/R and U/S bits describing it.",
        "SDM2 exceptions (#PF(fault-code)); SDM3 §4.7";
    MEM_PF_WITHIN_REGION = "mem.pf-within-region",
        "An XSAVE-family instruction accesses the bytes of the state components it operates on (and the legacy region and header); a page fault is reported on one of them.",
        "SDM1 §13.13";

    // ---- XRSTOR: the header (standard form XCOMP_BV[63] = 0, compacted form 1) ----
    XRSTOR_GP_XSTATE_BV_NOT_IN_XCR0 = "xrstor.gp-xstate-bv-not-in-xcr0",
        "Standard form: #GP(0) if a bit in XSTATE_BV is 1 and the corresponding bit in XCR0 is 0.",
        "SDM1 §13.8.1; SDM2 XRSTOR exceptions";
    XRSTOR_GP_HEADER_BYTES_23_8 = "xrstor.gp-header-bytes-23-8",
        "Standard form: #GP(0) if bytes 23:8 of the XSAVE header are not all 0 (XCOMP_BV and the next 8 bytes).",
        "SDM1 §13.8.1; SDM2 XRSTOR exceptions";
    XRSTOR_GP_COMPACTED_UNSUPPORTED = "xrstor.gp-compacted-unsupported",
        "#GP(0) if XCOMP_BV[63] = 1 and CPUID.(EAX=0DH,ECX=1):EAX.XSAVEC[bit 1] = 0.",
        "SDM2 XRSTOR exceptions; SDM1 §13.8.1 footnote";
    XRSTOR_GP_XCOMP_BV_NOT_ENABLED = "xrstor.gp-xcomp-bv-not-enabled",
        "Compacted form: #GP(0) if a bit in XCOMP_BV[62:0] is 1 and the corresponding bit of XCR0 (XRSTORS: XCR0 OR IA32_XSS) is 0.",
        "SDM1 §13.8.1, §13.12; SDM2 XRSTOR, XRSTORS exceptions";
    XRSTOR_GP_XSTATE_BV_NOT_IN_XCOMP_BV = "xrstor.gp-xstate-bv-not-in-xcomp-bv",
        "Compacted form: #GP(0) if a bit in XSTATE_BV is 1 and the corresponding bit in XCOMP_BV is 0.",
        "SDM1 §13.8.1, §13.12; SDM2 XRSTOR, XRSTORS exceptions";
    XRSTOR_GP_HEADER_BYTES_63_16 = "xrstor.gp-header-bytes-63-16",
        "Compacted form: #GP(0) if bytes 63:16 of the XSAVE header are not all 0.",
        "SDM1 §13.8.1, §13.12; SDM2 XRSTOR, XRSTORS exceptions";
    XRSTORS_GP_STANDARD_FORM = "xrstors.gp-standard-form",
        "XRSTORS: #GP(0) if XCOMP_BV[63] = 0 (there is no standard form).",
        "SDM1 §13.12; SDM2 XRSTORS exceptions";
    XRSTOR_NM_XFD = "xrstor.nm-xfd",
        "#NM if XRSTOR or XRSTORS would load a state component that is armed for XFD (RFBM[i] = XSTATE_BV[i] = 1, XCR0[i] = IA32_XFD[i] = 1).",
        "SDM1 §13.14";
    XRSTOR_GP_MXCSR_RESERVED = "xrstor.gp-mxcsr-reserved",
        "#GP(0) if the value to be loaded into MXCSR sets a reserved bit (a bit clear in MXCSR_MASK).",
        "SDM2 XRSTOR, XRSTORS exceptions; SDM1 §13.8.2";
    XRSTORS_GP_SUPERVISOR_VALUE = "xrstors.gp-supervisor-value",
        "XRSTORS: #GP(0) if it would load a supervisor state component element with an unsupported value (a reserved MSR bit, a non-canonical address, SSP bits 1:0 set).",
        "SDM1 §13.12; SDM4 IA32_U_CET, IA32_PLi_SSP";
    FXRSTOR_GP_MXCSR_RESERVED = "fxrstor.gp-mxcsr-reserved",
        "FXRSTOR: #GP(0) if the MXCSR image sets a reserved bit (a bit clear in MXCSR_MASK).",
        "SDM2 FXRSTOR exceptions; SDM1 §11.6.6";

    // ---- XGETBV, XSETBV ----
    XGETBV_GP_INVALID_XCR = "xgetbv.gp-invalid-xcr",
        "XGETBV: #GP(0) if ECX names an XCR that is not supported (ECX = 1 needs CPUID.(EAX=0DH,ECX=1):EAX[bit 2] = 1).",
        "SDM2 XGETBV exceptions";
    XGETBV_RETURNS_XCR = "xgetbv.returns-xcr",
        "XGETBV loads EDX:EAX with XCR[ECX]: XCR0 for ECX = 0, XCR0 AND XINUSE for ECX = 1 (bit 1 set when XCR0[1] = 1 and MXCSR != 1F80H); RAX[63:32] and RDX[63:32] are cleared.",
        "SDM2 XGETBV Operation; SDM1 §13.6";
    XSETBV_GP_CPL = "xsetbv.gp-cpl",
        "XSETBV: #GP(0) if the current privilege level is not 0.",
        "SDM2 XSETBV exceptions";
    XSETBV_GP_ECX = "xsetbv.gp-ecx",
        "XSETBV: #GP(0) if an invalid XCR is specified in ECX (only XCR0 exists).",
        "SDM2 XSETBV exceptions";
    XSETBV_GP_INVALID_XCR0 = "xsetbv.gp-invalid-xcr0",
        "XSETBV: #GP(0) if the value is not a valid XCR0: bit 0 clear, a bit not in CPUID.(EAX=0DH,ECX=0):EDX:EAX, AVX without SSE, one MPX half, AVX-512 not all three with SSE and AVX, TILECFG without TILEDATA.",
        "SDM1 §13.3; SDM2 XSETBV exceptions";
    XSETBV_LOADS_XCR0 = "xsetbv.loads-xcr0",
        "XSETBV writes EDX:EAX into XCR0.",
        "SDM2 XSETBV Operation";

    // ---- Saves: what is written ----
    XSAVE_SAVES_RFBM = "xsave.saves-rfbm",
        "XSAVE saves state component i if and only if RFBM[i] = 1 (RFBM = XCR0 AND EDX:EAX), in the standard format; an XFD-armed component is saved in its initial configuration.",
        "SDM1 §13.7, §13.14; SDM2 XSAVE Operation";
    XSAVE_MXCSR_WITH_SSE_OR_AVX = "xsave.mxcsr-with-sse-or-avx",
        "XSAVE and XSAVEOPT save MXCSR and MXCSR_MASK if RFBM[1] = 1 or RFBM[2] = 1, whatever XINUSE says.",
        "SDM1 §13.7, §13.9; SDM2 XSAVE, XSAVEOPT Operation";
    XSAVE_HEADER_RMW = "xsave.header-xstate-bv-rmw",
        "XSAVE and XSAVEOPT write XSTATE_BV := (XSTATE_BV AND NOT RFBM) OR (XINUSE AND RFBM) and no other byte of the header.",
        "SDM1 §13.7, §13.9; SDM2 XSAVE, XSAVEOPT Operation";
    XSAVEOPT_SAVES_IN_USE = "xsaveopt.saves-rfbm-and-xinuse",
        "XSAVEOPT saves component i if RFBM[i] = XINUSE[i] = 1 and, when XRSTOR_INFO matches <CPL, VMX mode, linear address, 0>, XMODIFIED[i] = 1; it does not write the others.",
        "SDM1 §13.9; SDM2 XSAVEOPT Operation (TO_BE_SAVED)";
    XSAVEC_SAVES_IN_USE = "xsavec.saves-rfbm-and-xinuse",
        "XSAVEC saves component i if and only if RFBM[i] = XINUSE[i] = 1 (SSE, with MXCSR and MXCSR_MASK, also when RFBM[1] = 1 and MXCSR != 1F80H), in the compacted format of RFBM.",
        "SDM1 §13.10; SDM2 XSAVEC Operation (TO_BE_SAVED)";
    XSAVEC_HEADER = "xsavec.header-is-rfbm-and-xinuse",
        "XSAVEC writes XSTATE_BV := RFBM AND XINUSE (bit 1 also when RFBM[1] = 1 and MXCSR != 1F80H), XCOMP_BV := RFBM OR 2^63, and no other byte of the header.",
        "SDM1 §13.10; SDM2 XSAVEC Operation";
    XSAVES_SAVES_IN_USE = "xsaves.saves-rfbm-and-xinuse",
        "XSAVES saves component i if RFBM[i] = XINUSE[i] = 1 (RFBM = (XCR0 OR IA32_XSS) AND EDX:EAX) and, when XRSTOR_INFO matches <CPL, VMX mode, linear address, RFBM OR 2^63>, XMODIFIED[i] = 1; SSE also when RFBM[1] = 1 and MXCSR != 1F80H.",
        "SDM1 §13.11; SDM2 XSAVES Operation (TO_BE_SAVED)";
    XSAVES_HEADER = "xsaves.header-is-rfbm-and-xinuse",
        "XSAVES writes XSTATE_BV := RFBM AND XINUSE (bit 1 also when RFBM[1] = 1 and MXCSR != 1F80H), whatever the modified optimization skipped, XCOMP_BV := RFBM OR 2^63, and no other byte of the header.",
        "SDM1 §13.11; SDM2 XSAVES Operation (NEW_HEADER)";
    FXSAVE_SAVES_LEGACY = "fxsave.saves-legacy-region",
        "FXSAVE saves the x87 state and, with CR4.OSFXSR = 1, MXCSR, MXCSR_MASK and the XMM registers into the 512-byte area; it does not write bytes 464:511.",
        "SDM2 FXSAVE Operation and tables 3-53, 3-56";
    SAVE_WRITES_ONLY_SAVED = "save.writes-only-saved",
        "A save writes only the state components it saves, MXCSR as its rule says, and the header fields it names; it does not modify bytes 511:464 of the legacy region or any other memory.",
        "SDM1 §13.4.1, §13.7-13.11; SDM2 XSAVE, XSAVEOPT, XSAVEC, XSAVES Operation";
    SAVE_X87_FORMAT = "save.x87-format",
        "The x87 state is saved in the FXSAVE layout: FCW, FSW, abridged FTW, FOP, FIP and FDP (64-bit with REX.W, else 32-bit with FCS and FDS, 0 where CPUID.(EAX=07H,ECX=0):EBX[bit 13] = 1), ST0-ST7.",
        "SDM1 §13.5.1; SDM2 FXSAVE tables 3-53, 3-56";
    SAVE_MXCSR_MASK = "save.mxcsr-mask",
        "MXCSR_MASK is saved as the processor's mask of supported MXCSR bits.",
        "SDM1 §11.6.6, §13.5.2";

    // ---- Restores: what is loaded ----
    XRSTOR_LOADS_STANDARD = "xrstor.loads-rfbm-by-xstate-bv",
        "Standard-form XRSTOR: for RFBM[i] = 1, component i is loaded from the area if XSTATE_BV[i] = 1 and set to its initial configuration if XSTATE_BV[i] = 0.",
        "SDM1 §13.8.1, §13.8.2; SDM2 XRSTOR Operation";
    XRSTOR_MXCSR_STANDARD = "xrstor.mxcsr-with-sse-or-avx",
        "Standard-form XRSTOR loads MXCSR from the area if RFBM[1] = 1 or RFBM[2] = 1, whatever XSTATE_BV says; initializing SSE does not change MXCSR.",
        "SDM1 §13.8.2; SDM2 XRSTOR Operation";
    XRSTOR_LOADS_COMPACTED = "xrstor.loads-rfbm-by-xstate-bv-and-xcomp-bv",
        "Compacted XRSTOR and XRSTORS: for RFBM[i] = 1, component i is loaded from its compacted offset if XSTATE_BV[i] = XCOMP_BV[i] = 1 and initialized otherwise; MXCSR is loaded with SSE and set to 1F80H when SSE is initialized.",
        "SDM1 §13.8.2, §13.12; SDM2 XRSTOR, XRSTORS Operation";
    XRSTOR_RFBM_CLEAR_UNTOUCHED = "xrstor.rfbm-clear-untouched",
        "A restore does not modify a state component i with RFBM[i] = 0 (the standard form's MXCSR with RFBM[2] = 1 aside).",
        "SDM1 §13.8; SDM2 XRSTOR, XRSTORS Operation";
    XRSTOR_XINUSE = "xrstor.xinuse-after-load",
        "After XRSTOR or XRSTORS, XINUSE[i] = 1 for a component loaded from memory; XMODIFIED := NOT RFBM and XRSTOR_INFO := <CPL, VMX mode, linear address, XCOMP_BV>.",
        "SDM1 §13.8.3, §13.12";
    XRSTOR_TILECFG = "xrstor.tilecfg-unsupported-initializes",
        "XRSTOR(S) of a TILECFG value that LDTILECFG would not accept initializes TILECFG instead of faulting.",
        "SDM1 §13.5.11";
    FXRSTOR_LOADS_LEGACY = "fxrstor.loads-legacy-region",
        "FXRSTOR loads the x87 state and, with CR4.OSFXSR = 1, MXCSR and the XMM registers from the 512-byte area.",
        "SDM2 FXRSTOR Operation";

    // ---- State in general ----
    XINUSE_ZERO_ONLY_IN_INIT = "xinuse.zero-only-in-init",
        "XINUSE[i] = 0 only if state component i is in its initial configuration (XGETBV(1) and XSTATE_BV show it; XINUSE[1] reads 1 when MXCSR != 1F80H for XGETBV(1)).",
        "SDM1 §13.6";
    STATE_UNCHANGED = "state.unchanged-by-others",
        "Processor state changes only as the Operation sections of the instructions run say: saves change no register state, a restore only the components of RFBM.",
        "SDM1 §13.7-13.12; SDM2 Operation sections";
    FAULT_LEAVES_STATE = "fault.leaves-state",
        "When a fault is reported, the processor state is restored to what it was before the faulting instruction began: a restore that faults has loaded and initialized nothing (the exceptions are latitude: XRSTORS's supervisor components, user state before a #GP on a value loaded).",
        "SDM3 §6.5 (faults); SDM1 §13.12 (XRSTORS's supervisor components)";
    GPRS_UNCHANGED = "gprs.unchanged",
        "The XSAVE-family instructions modify no general-purpose register (XGETBV writes EDX:EAX).",
        "SDM2 XSAVE-family Operation sections";
    LDMXCSR_GP_RESERVED = "ldmxcsr.gp-mxcsr-reserved",
        "LDMXCSR: #GP(0) if the value sets a reserved bit of MXCSR (a bit clear in MXCSR_MASK).",
        "SDM2 LDMXCSR exceptions";
    LDTILECFG_GP_INVALID = "ldtilecfg.gp-invalid-config",
        "LDTILECFG: #GP(0) if palette_id exceeds max_palette or, for palette_id ≠ 0, a reserved byte is nonzero, a tile's colsb exceeds bytes_per_row or its rows exceed max_rows, or exactly one of its rows and colsb is 0.",
        "SDM2 LDTILECFG Operation; exception class AMX-E1";
    INSN_SEMANTICS = "insn.other-semantics",
        "The other instructions a case uses (MOV, LDMXCSR, STMXCSR, MOVQ, PXOR, VZEROUPPER, VZEROALL, KMOVQ, FNINIT, NOP, LDTILECFG, STTILECFG, TILERELEASE) do what their pages say.",
        "SDM2 MOV, LDMXCSR, STMXCSR, MOVQ, PXOR, VZEROUPPER, VZEROALL, KMOVQ, FNINIT, NOP, LDTILECFG, STTILECFG, TILERELEASE Operation";
    FAULT_ONLY_AS_LISTED = "insn.faults-only-as-listed",
        "An instruction raises an exception only under a condition its page lists; otherwise it completes.",
        "SDM2 exceptions sections; SDM3 §6.15";
}

/// The rule with this id.
pub fn by_id(id: &str) -> Option<&'static Rule> {
    RULES.iter().copied().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate rule id");
        for r in RULES {
            let (scope, what) = r.id.split_once('.').expect(r.id);
            assert!(!scope.is_empty() && !what.is_empty(), "{}", r.id);
            assert!(
                r.id.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'.'
                    || b == b'-'),
                "{}",
                r.id
            );
            assert!(r.sentence.ends_with('.'), "{}", r.id);
            assert!(r.citation.starts_with("SDM"), "{}", r.id);
        }
        assert_eq!(
            by_id("xrstor.gp-mxcsr-reserved"),
            Some(&XRSTOR_GP_MXCSR_RESERVED)
        );
        assert_eq!(by_id("no.such-rule"), None);
    }
}
