use super::*;

#[test]
fn decoding_replaces_invalid_utf8_and_nul_and_holds_back_half_a_character() {
    let bytes = b"ok \xff\x00 \xc3\xa9";
    let all = decode(bytes, usize::MAX, true);
    assert_eq!(all.text, "ok \u{fffd}\u{fffd} \u{e9}");
    assert_eq!(all.consumed, bytes.len());
    assert_eq!(
        all.text,
        String::from_utf8_lossy(bytes).replace('\0', "\u{fffd}")
    );

    // Half of "é" at the end: left for later, unless it is the last read.
    let half = decode(b"ab\xc3", usize::MAX, false);
    assert_eq!((half.text.as_str(), half.consumed), ("ab", 2));
    let last = decode(b"ab\xc3", usize::MAX, true);
    assert_eq!((last.text.as_str(), last.consumed), ("ab\u{fffd}", 3));

    // A budget never splits a character, nor a replacement.
    let cut = decode("aé".as_bytes(), 2, true);
    assert_eq!((cut.text.as_str(), cut.consumed), ("a", 1));
    let cut = decode(b"a\x00", 3, true);
    assert_eq!((cut.text.as_str(), cut.consumed), ("a", 1));
    let cut = decode(b"a\xff", 3, true);
    assert_eq!((cut.text.as_str(), cut.consumed), ("a", 1));
}

#[test]
fn decoding_in_pieces_gives_the_text_decoding_whole_gives() {
    let bytes = "élan \u{1f680} done\n".as_bytes().to_vec();
    let mut bytes = bytes;
    bytes.extend_from_slice(b"\xe2\x82 \x00\xf0\x9f\x9a\n");
    let whole = decode(&bytes, usize::MAX, true).text;
    for split in 0..=bytes.len() {
        let first = decode(&bytes[..split], usize::MAX, false);
        let rest = decode(&bytes[first.consumed..], usize::MAX, true);
        assert_eq!(first.text + &rest.text, whole, "split at {split}");
    }
}

/// The journal's copy, as a string the planned writes apply to.
#[derive(Default)]
struct Stored {
    text: String,
    truncated: bool,
}

impl Stored {
    fn apply(&mut self, write: &Write) -> bool {
        match write {
            Write::Append {
                expected,
                text,
                truncated,
            } => {
                if *expected != self.text.len() as u64 {
                    return false;
                }
                self.text.push_str(text);
                self.truncated |= truncated;
            }
            Write::Replace { text, truncated } => {
                self.text = text.clone();
                self.truncated = *truncated;
            }
        }
        true
    }
}

/// Copies `file` as it grows by `steps` (its lengths at each tick), then
/// once more at the end; every stored state is a prefix of the next one.
fn mirror(file: &[u8], steps: &[usize], cap: u64) -> Stored {
    let mut copy = LogCopy::new(cap);
    let mut stored = Stored::default();
    let mut seen = String::new();
    for (i, &len) in steps.iter().chain([&file.len()]).enumerate() {
        let last = i == steps.len();
        let from = copy.read_from() as usize;
        let to = len.min(from + copy.read_at_most(last) as usize).max(from);
        if let Some(planned) = copy.plan(&file[from..to], last) {
            assert!(stored.apply(&planned.write));
            copy.written(&planned);
        }
        assert!(
            stored.text.len() as u64 <= cap,
            "{} > {cap}",
            stored.text.len()
        );
        assert!(stored.text.starts_with(&seen), "the copy only grows");
        seen = stored.text.clone();
    }
    stored
}

#[test]
fn a_log_within_the_cap_is_copied_whole_as_it_grows() {
    let file = b"step one\nstep \x00two \xff\n-- redeploy: deploy #1 succeeded\n";
    let stored = mirror(file, &[0, 5, 9, 20, 20], 1024);
    assert_eq!(stored.text, decode(file, usize::MAX, true).text);
    assert!(!stored.truncated);
}

#[test]
fn a_log_past_the_cap_keeps_its_beginning_a_marker_and_its_last_line() {
    let mut file = "é".repeat(3000).into_bytes();
    file.extend_from_slice(b"\n-- redeploy: deploy #7 failed (exit code 2) after 1.0s\n");
    for cap in [4096u64, 2000, 300, 64, 10, 1] {
        let stored = mirror(&file, &[100, 3000, 5000], cap);
        assert!(stored.truncated, "cap {cap}");
        assert!(stored.text.len() as u64 <= cap, "cap {cap}");
        if cap >= 300 {
            assert!(stored.text.starts_with("éé"), "cap {cap}");
            assert!(stored.text.contains(&cut_marker(cap as usize)), "cap {cap}");
            assert!(
                stored
                    .text
                    .ends_with("\n-- redeploy: deploy #7 failed (exit code 2) after 1.0s\n"),
                "cap {cap}: {}",
                stored.text
            );
        }
    }
}

#[test]
fn after_a_failed_write_the_copy_is_rewritten_whole_and_comes_out_the_same() {
    let file = b"one\ntwo\nthree\n-- redeploy: deploy #3 succeeded\n";
    let mut copy = LogCopy::new(1024);
    let mut stored = Stored::default();
    let planned = copy.plan(&file[..4], false).unwrap();
    assert!(stored.apply(&planned.write));
    copy.written(&planned);
    // The next append's outcome is lost: the journal has it, the copy does not know.
    let planned = copy.plan(&file[4..8], false).unwrap();
    assert!(stored.apply(&planned.write));
    copy.failed();
    assert_eq!(copy.read_from(), 0);
    let planned = copy.plan(file, true).unwrap();
    assert!(matches!(planned.write, Write::Replace { .. }));
    assert!(stored.apply(&planned.write));
    copy.written(&planned);
    assert_eq!(stored.text.as_bytes(), file);
    // Nothing new: nothing written.
    assert_eq!(copy.plan(b"", false), None);
}

#[test]
fn the_tail_of_a_stored_log_starts_on_a_character() {
    assert_eq!(last_line("a\nb\nlast\n", 100), "last\n");
    assert_eq!(last_line("no newline", 100), "no newline");
    assert_eq!(last_line("x\néé\n", 4), "é\n");
}

#[test]
fn files_of_deploys_the_journal_no_longer_holds_are_swept() {
    let base = std::env::temp_dir().join(format!("redeploy-orphans-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let journal = Journal::open(&base.join("journal.sqlite3")).unwrap();
    let id = journal.insert_manual_deploy("web");
    let logs = base.join("logs");
    let web = logs.join("web");
    std::fs::create_dir_all(&web).unwrap();
    let gone = id + 1;
    let names = [
        format!("{id}.log"),
        format!("{id}.event.json"),
        format!("{gone}.log"),
        format!("{gone}.event.json"),
        "notes.txt".to_owned(),
    ];
    for name in &names {
        std::fs::write(web.join(name), b"x").unwrap();
    }
    assert_eq!(remove_orphan_files(&journal, &logs).unwrap(), 2);
    let mut left: Vec<String> = std::fs::read_dir(&web)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            format!("{id}.event.json"),
            format!("{id}.log"),
            "notes.txt".to_owned()
        ]
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_deploys_log_is_read_where_its_runner_writes_it_never_where_its_row_says() {
    let base = std::env::temp_dir().join(format!("redeploy-log-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let journal = Journal::open(&base.join("journal.sqlite3")).unwrap();
    let id = journal.insert_manual_deploy("web");
    // A row naming another file (an imported export's, a database write's).
    let secret = base.join("config.toml");
    std::fs::write(&secret, "secrets = [\"hunter2\"]\n").unwrap();
    let named = crate::journal::TransitionDetail {
        log_path: Some(secret.display().to_string()),
        ..Default::default()
    };
    journal
        .transition(id, crate::journal::DeployState::Started, 1, &named)
        .unwrap();
    let deploy = journal.deploy(id).unwrap().unwrap();
    let own = file_path(&base, "web", id);
    assert_eq!(own, base.join("logs").join("web").join(format!("{id}.log")));
    assert_eq!(local_file(&base, &deploy), Some(own.clone()));
    // Nothing there yet: nothing to read (a SQLite journal keeps no copy).
    assert_eq!(read_tail(&journal, &base, id, 1000), None);
    assert_eq!(
        LogSource::of(&journal, &base, &deploy).unwrap(),
        Some(LogSource::File(own.clone()))
    );
    let source = LogSource::of(&journal, &base, &deploy).unwrap().unwrap();
    assert_eq!(source.read_from(&journal, id, 0, 1000).unwrap(), b"");
    // The runner's file is the log.
    std::fs::create_dir_all(own.parent().unwrap()).unwrap();
    std::fs::write(&own, "ran\n").unwrap();
    assert_eq!(
        read_tail(&journal, &base, id, 1000).as_deref(),
        Some("ran\n")
    );
    assert_eq!(source.read_from(&journal, id, 0, 1000).unwrap(), b"ran\n");
    // A stack name no stack may have names no file; no log yet, none.
    let mut escaping = deploy.clone();
    escaping.queued.stack = "..".into();
    assert_eq!(local_file(&base, &escaping), None);
    assert_eq!(LogSource::of(&journal, &base, &escaping).unwrap(), None);
    let mut unstarted = deploy;
    unstarted.log_path = None;
    assert_eq!(local_file(&base, &unstarted), None);
    let _ = std::fs::remove_dir_all(&base);
}
