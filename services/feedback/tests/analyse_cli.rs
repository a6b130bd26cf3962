//! `cabin-feedback analyse FILE` as an operator runs it: no bus, JSON Lines or CSV in, the
//! recurring problems as JSON out; a bad row is refused with its line number.

use std::process::Command;

fn analyse(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cabin-feedback"))
        .arg("analyse")
        .args(args)
        // No bus anywhere: the command must not need one.
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn jsonl_and_csv_exports_give_problems_with_their_item_ids() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("reviews.jsonl");
    std::fs::write(
        &jsonl,
        r#"{"id":"r1","channel":"app","text":"座椅加热坏了，冬天太难受","rating":1,"locale":"zh-CN"}
{"id":"r2","channel":"dealer","text":"C/S driver seat heater inop. Verified, element open."}
{"id":"r3","channel":"voice","text":"uh the heated seats just don't get warm at all"}
{"id":"r4","channel":"call-center","text":"用户来电反映倒车影像黑屏，挂R挡没有画面"}
{"id":"r5","channel":"app","text":"Backup camera goes black every time I reverse. Call 13912345678","rating":2}
"#,
    )
    .unwrap();
    let (code, report, stderr) = analyse(&[jsonl.to_str().unwrap(), "--quotes", "2"]);
    assert_eq!(code, 0, "{stderr}");
    let problems = report["problems"].as_array().unwrap();
    let ids: Vec<Vec<&str>> = problems
        .iter()
        .map(|p| {
            let mut ids: Vec<&str> = p["item_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap())
                .collect();
            ids.sort_unstable();
            ids
        })
        .collect();
    assert_eq!(
        ids,
        vec![vec!["r1", "r2", "r3"], vec!["r4", "r5"]],
        "{report:#}"
    );
    for p in problems {
        for key in [
            "label",
            "keywords",
            "count",
            "quotes",
            "improvement",
            "severity",
            "sentiment",
            "channels",
        ] {
            assert!(!p[key].is_null(), "{key} missing in {p}");
        }
        assert!(p["quotes"].as_array().unwrap().len() <= 2);
    }
    // Quotes are redacted like everything else that leaves the analysis.
    assert!(!report.to_string().contains("13912345678"));
    // The camera is a safety matter.
    assert_eq!(problems[1]["severity"], "high", "{}", problems[1]);

    let csv = dir.path().join("notes.csv");
    std::fs::write(
        &csv,
        "channel,text,rating\napp,座椅加热坏了，冬天太难受,1\ndealer,\"C/S driver seat heater inop. Verified, element open.\",\nvoice,uh the heated seats just don't get warm at all,\n",
    )
    .unwrap();
    let (code, report, stderr) = analyse(&[csv.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        report["problems"][0]["item_ids"],
        serde_json::json!(["1", "2", "3"])
    );
}

#[test]
fn a_bad_row_is_refused_with_its_line_and_nothing_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"text\":\"screen lags\"}\n{\"text\":\"x\",\"rating\":7}\n",
    )
    .unwrap();
    let (code, report, stderr) = analyse(&[bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(report.is_null());
    assert!(
        stderr.contains("line 2") && stderr.contains("rating"),
        "{stderr}"
    );

    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "text,channel\nscreen lags,app\nsomething,fax\n").unwrap();
    let (code, _, stderr) = analyse(&[csv.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("line 3") && stderr.contains("fax"),
        "{stderr}"
    );

    let (code, _, stderr) = analyse(&[dir.path().join("none.jsonl").to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("none.jsonl"), "{stderr}");
    let (code, _, stderr) = analyse(&["README"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--format"), "{stderr}");
}
