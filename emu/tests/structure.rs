//! Dependencies inside emu run one way (DESIGN.md "Rules"; issue 13 item 8):
//! the machine, the rules and the latitude sit below the instruction files;
//! instructions use them; exec dispatches; envelope runs exec. Read from the
//! sources: each file's `crate::NAME` references (comments left out).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// File -> the emu files it references.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let names: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut g = BTreeMap::new();
    for n in &names {
        let text = std::fs::read_to_string(dir.join(format!("{n}.rs"))).unwrap();
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let mut deps = BTreeSet::new();
        for (k, _) in code.match_indices("crate::") {
            let rest = &code[k + "crate::".len()..];
            let id: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if names.contains(&id) && &id != n {
                deps.insert(id);
            }
        }
        g.insert(n.clone(), deps);
    }
    g
}

const INSTRUCTIONS: [&str; 12] = [
    "xsave",
    "xsaveopt",
    "xsavec",
    "xsaves",
    "xrstor",
    "xrstor_compacted",
    "xrstors",
    "fxsave",
    "fxrstor",
    "xgetbv",
    "xsetbv",
    "helpers",
];

#[test]
fn emu_imports_have_no_cycle() {
    let g = imports();
    assert!(g.len() > 30, "{g:?}");
    // Depth-first search for a back edge.
    fn visit<'a>(
        g: &'a BTreeMap<String, BTreeSet<String>>,
        n: &'a str,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let k = path.iter().position(|&p| p == n).unwrap();
                return Some(path[k..].iter().map(|s| s.to_string()).collect());
            }
            _ => {}
        }
        state.insert(n, 1);
        path.push(n);
        for d in &g[n] {
            if let Some(c) = visit(g, d, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        let cycle = visit(&g, n, &mut state, &mut Vec::new());
        assert_eq!(cycle, None, "an import cycle");
    }
}

#[test]
fn the_machine_rules_and_latitude_sit_below_the_instructions() {
    let g = imports();
    let above: BTreeSet<&str> = INSTRUCTIONS
        .iter()
        .copied()
        .chain(["exec", "envelope", "save", "restore", "area"])
        .collect();
    for low in [
        "machine",
        "rules",
        "latitude",
        "provenance",
        "writes",
        "state",
        "decode",
    ] {
        let bad: Vec<&String> = g[low]
            .iter()
            .filter(|d| above.contains(d.as_str()))
            .collect();
        assert!(bad.is_empty(), "{low} imports {bad:?}");
    }
    // Instructions use the machine and the rules; none dispatches or judges.
    for i in INSTRUCTIONS {
        assert!(g[i].contains("machine"), "{i}: {:?}", g[i]);
        assert!(
            !g[i].contains("exec") && !g[i].contains("envelope"),
            "{i}: {:?}",
            g[i]
        );
    }
    // exec dispatches to every instruction; envelope runs exec; nothing else does.
    for i in INSTRUCTIONS.iter().filter(|&&i| i != "xrstor_compacted") {
        assert!(g["exec"].contains(*i), "exec does not dispatch {i}");
    }
    assert!(g["envelope"].contains("exec"));
    let exec_users: Vec<&String> = g
        .iter()
        .filter(|(n, d)| d.contains("exec") && n.as_str() != "lib")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(exec_users, ["envelope"]);
}
