//! The release binary's code layout: the functions a server runs
//! (`host/hot-functions.txt`, written by `bench/hot_functions.py`) are
//! linked first in `.text`, together, so a server touches few pages of
//! its code (BENCHMARKS.md, idle memory; `host/build.rs`); and its
//! allocator.

use object::read::elf::ElfFile64;
use object::{Endianness, Object, ObjectSection, ObjectSymbol};
use std::collections::{HashMap, HashSet};

/// The share of the listed functions the binary must still define (by
/// name, whatever its crates' hashes), in percent. Below it the list has
/// gone stale with the code: run `bench/hot_functions.py` again.
const HOT_LIST_MIN_PRESENT_PERCENT: usize = 90;

/// Listed functions this binary must define under the very names listed,
/// so the linker could place them. The list holds the names of a plain
/// `cargo build --release` (what `cargo install --locked`, `cargo deb` and
/// the README's run command link); a test build unifies the
/// dev-dependencies' features into the crates they share with the binary,
/// which changes those crates' hashes and the hashes of every crate above
/// them, the workspace's included. What keeps its name there is the
/// standard library's, the untouched dependencies' and the C code's
/// (measured: 1,795 of the 3,742, the list of BENCHMARKS.md, part 5,
/// nineteenth pass).
const HOT_LIST_MIN_EXACT: usize = 1000;

/// How much larger than the placed functions' own bytes the stretch of
/// `.text` they occupy may be, in percent (alignment padding between
/// functions; scattered, they span most of the 22 MB of code).
const HOT_SPAN_SLACK_PERCENT: u64 = 125;

/// A symbol's name without what depends on how its crate was built: the
/// hashes of both mangling schemes and LLVM's `.llvm.<n>` suffix.
fn unhashed(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

#[test]
fn the_functions_a_server_runs_are_linked_first_and_together() {
    let list =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/hot-functions.txt")).unwrap();
    assert_eq!(
        env!("REDEPLOY_HOT_FUNCTIONS"),
        "applied",
        "host/build.rs did not hand the list to the linker"
    );
    let listed: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        listed.len() > 1000,
        "host/hot-functions.txt lists {} functions",
        listed.len()
    );

    let data = std::fs::read(env!("CARGO_BIN_EXE_redeploy")).unwrap();
    let elf = ElfFile64::<Endianness>::parse(&*data).unwrap();
    let text = elf.section_by_name(".text").expect("the binary has .text");
    let text_start = text.address();
    let mut defined: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut defined_unhashed: HashSet<String> = HashSet::new();
    for (name, address, size) in text_functions(&elf) {
        defined.insert(name, (address, size));
        defined_unhashed.insert(unhashed(name));
    }
    assert!(
        defined.len() > 10_000,
        "only {} functions in .text: stripped?",
        defined.len()
    );

    let by_name = listed
        .iter()
        .filter(|n| defined_unhashed.contains(&unhashed(n)))
        .count();
    assert!(
        by_name * 100 >= listed.len() * HOT_LIST_MIN_PRESENT_PERCENT,
        "{by_name} of the {} functions in host/hot-functions.txt are in the binary: the list is stale, run bench/hot_functions.py",
        listed.len()
    );
    let mut placed: Vec<(u64, u64)> = listed
        .iter()
        .filter_map(|n| defined.get(n).copied())
        .collect();
    assert!(
        placed.len() >= HOT_LIST_MIN_EXACT,
        "only {} of the {} listed functions keep their listed names in this binary (at least {HOT_LIST_MIN_EXACT} must): run bench/hot_functions.py",
        placed.len(),
        listed.len()
    );
    // Symbols of folded identical functions share an address: count each
    // stretch of code once.
    placed.sort_unstable();
    placed.dedup_by_key(|(address, _)| *address);
    let own_bytes: u64 = placed.iter().map(|(_, size)| size).sum();
    let span_end = placed.iter().map(|(a, s)| a + s).max().unwrap();
    let span = span_end - text_start;
    assert!(
        span * 100 <= own_bytes * HOT_SPAN_SLACK_PERCENT,
        "the listed functions' {own_bytes} bytes spread over the first {span} bytes of .text (of {}): the symbol ordering was not applied",
        text.size()
    );
}

/// The functions of the binary `elf`: each named symbol of `.text` with a
/// size, with its address and size.
fn text_functions<'data, 'file>(
    elf: &'file ElfFile64<'data, Endianness>,
) -> impl Iterator<Item = (&'data str, u64, u64)> + 'file {
    let text = elf.section_by_name(".text").expect("the binary has .text");
    let text_index = text.index();
    elf.symbols().filter_map(move |symbol| {
        let in_text = symbol.section_index() == Some(text_index) && symbol.size() > 0;
        let name = symbol.name().ok().filter(|_| in_text)?;
        Some((name, symbol.address(), symbol.size()))
    })
}

/// A function of the host crate ([`is_host_crates`]) by its demangled
/// path, when its name is LLVM's rename of one that local ThinLTO shares
/// between codegen units: `<name>.llvm.<hash>`, the hash taken from the
/// unit's code (and maybe more after it, such as `.cold`). `None` for a
/// name without that suffix or of another crate.
fn renamed_host_function(name: &str) -> Option<String> {
    let (base, suffix) = name.split_once(".llvm.")?;
    if !suffix.bytes().next().is_some_and(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let path = unhashed(base);
    is_host_crates(&path).then_some(path)
}

/// Whether a demangled path names a function the host crate's code
/// emitted: one of its own, or a generic instantiated with its types
/// (no other crate can instantiate those).
fn is_host_crates(path: &str) -> bool {
    path.contains("redeploy_host::") || path.contains("redeploy::")
}

/// The host crate is built in one codegen unit (the workspace's
/// `[profile.release.package.redeploy-host]`), so no function of it is
/// renamed with a hash of its unit's code: the names in
/// `host/hot-functions.txt` stay the binary's names across edits of the
/// crate, instead of going stale with the next commit (BENCHMARKS.md, part
/// 5, sixth pass: one small commit had left 198 listed names undefined and
/// the idle server 2-3 MiB larger).
#[test]
fn the_host_crates_function_names_do_not_depend_on_its_code() {
    assert_eq!(
        renamed_host_function(
            "_ZN13redeploy_host7bounded8read_all17h15a0c8d1d3e14a19E.llvm.12475516458654611902"
        )
        .as_deref(),
        Some("redeploy_host::bounded::read_all"),
        "the check recognizes a renamed function of the host crate"
    );
    let data = std::fs::read(env!("CARGO_BIN_EXE_redeploy")).unwrap();
    let elf = ElfFile64::<Endianness>::parse(&*data).unwrap();
    let mut host_functions = 0;
    let mut renamed = Vec::new();
    for (name, _, _) in text_functions(&elf) {
        if is_host_crates(&unhashed(name)) {
            host_functions += 1;
        }
        renamed.extend(renamed_host_function(name));
    }
    assert!(
        host_functions > 1000,
        "only {host_functions} functions of the host crate: stripped?"
    );
    assert!(
        renamed.is_empty(),
        "{} functions of the host crate carry LLVM's per-unit suffix (is it built in several codegen units?), e.g. {:?}",
        renamed.len(),
        &renamed[..renamed.len().min(5)]
    );
}

/// The binary allocates with jemalloc, under the options `host/src/main.rs`
/// gives it in jemalloc's `malloc_conf` global (BENCHMARKS.md, part 5,
/// nineteenth pass): asked to confirm its configuration, the allocator
/// that starts with the process names that global as a source and sets
/// each option from it. (Were the C library's `malloc` the allocator,
/// jemalloc would never start and say nothing; were the global misnamed,
/// jemalloc would read an empty one.)
#[test]
fn the_binary_allocates_with_jemalloc_under_its_options() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_redeploy"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "confirm_conf:true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    let global = said
        .split("<jemalloc>: malloc_conf #")
        .find(|source| source.contains("global variable malloc_conf)"))
        .unwrap_or_else(|| panic!("jemalloc did not confirm its configuration:\n{said}"));
    for option in ["dirty_decay_ms:1000", "muzzy_decay_ms:0", "tcache_max:1024"] {
        assert!(
            global.contains(&format!("-- Set conf value: {option}\n")),
            "jemalloc did not set {option} from the binary's global:\n{said}"
        );
    }
}
