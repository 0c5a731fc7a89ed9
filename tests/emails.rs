//! E-mail content and routing, end to end through `overdued replay --emails DIR`
//! (the same rendering the daemon hands to SMTP), each message parsed with a real
//! MIME parser (`mail-parser`): grouping (N alerts → one e-mail per unit per
//! interval), routing and recipients, the daily digest, escalation to the parent
//! unit's head, silences, Vietnamese text after decoding, no header injection
//! from a record id with CR/LF, HTML escaping of `<script>` in a procedure name.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Mail {
    file: String,
    to: Vec<String>,
    subject: String,
    text: String,
    html: String,
    raw: String,
    header_names: Vec<String>,
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("emails-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const UNITS: &str = "code,name,level,parent,emails,head_email
SO,Sở Tài nguyên và Môi trường,province,,so@example.vn,gd.so@example.vn
CN,Chi nhánh Văn phòng Đăng ký đất đai,district,SO,cn@example.vn;motcua.cn@example.vn,gd.cn@example.vn
XA,UBND xã Tam Xuân,commune,,xa@example.vn,ct.xa@example.vn
";

const PROCEDURES: &str = "code,name,sector,duration,duration_unit
P1,Đăng ký biến động quyền sử dụng đất,DD,10,working_days
P2,<script>alert(1)</script> Cấp bản sao,TP,5,working_days
";

fn config(d: &Path, extra: &str) -> PathBuf {
    let cal = d.join("calendar");
    std::fs::create_dir_all(&cal).unwrap();
    std::fs::copy("config/calendar/vn-2026.toml", cal.join("vn-2026.toml")).unwrap();
    std::fs::write(d.join("units.csv"), UNITS).unwrap();
    std::fs::write(d.join("procedures.csv"), PROCEDURES).unwrap();
    let p = d.join("overdued.toml");
    std::fs::write(
        &p,
        format!(
            r#"[calendar]
timezone = "Asia/Ho_Chi_Minh"
periods  = ["07:00-11:30", "13:30-17:00"]
weekdays = ["mon", "tue", "wed", "thu", "fri"]
files    = ["calendar/vn-2026.toml"]

[directory]
units      = "units.csv"
procedures = "procedures.csv"

[rules]
hanging_after_hours   = 8
due_soon_before_hours = 16
escalate_after_hours  = 16

[email]
batch_at = []
from            = "overdued <no-reply@example.vn>"
admin           = "hcc@example.vn"
group_wait      = "30s"
group_interval  = "5m"
digest_at       = "07:30"
{extra}
"#
        ),
    )
    .unwrap();
    p
}

fn ev(id: &str, rec: &str, ty: &str, at: &str, rest: &str) -> String {
    format!(
        r#"{{"event_id": {}, "record_id": {}, "type": "{ty}", "at": "{at}"{rest}}}"#,
        serde_json::to_string(id).unwrap(),
        serde_json::to_string(rec).unwrap()
    )
}

fn replay(cfg: &Path, events: &[String], until: &str, out: &Path) -> Vec<Mail> {
    let evf = out.join("events.ndjson");
    std::fs::write(&evf, events.join("\n") + "\n").unwrap();
    let emails = out.join("emails");
    let st = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["replay", "--config"])
        .arg(cfg)
        .arg("--emails")
        .arg(&emails)
        .args(["--until", until])
        .arg(&evf)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut files: Vec<_> = std::fs::read_dir(&emails)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let raw = std::fs::read(f).unwrap();
            let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
            let to = m
                .to()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.address().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            Mail {
                file: f.file_name().unwrap().to_string_lossy().into(),
                to,
                subject: m.subject().unwrap_or_default().to_string(),
                text: m.body_text(0).map(|c| c.into_owned()).unwrap_or_default(),
                html: m.body_html(0).map(|c| c.into_owned()).unwrap_or_default(),
                header_names: m
                    .headers()
                    .iter()
                    .map(|h| h.name().to_ascii_lowercase())
                    .collect(),
                raw: String::from_utf8_lossy(&raw).into(),
            }
        })
        .collect()
}

/// 30 ordinary records, one with `<script>` in its procedure name, one whose id
/// carries CR/LF and a Bcc header, all at CN, overdue at 10:00 on Monday
/// 2026-03-02; one record at XA whose `hanging` is silenced.
fn province_morning() -> Vec<String> {
    let mut evs = Vec::new();
    for i in 0..30 {
        evs.push(ev(
            &format!("e{i}"),
            &format!("R{i:02}"),
            "received",
            "2026-03-02T08:00:00+07:00",
            r#", "unit": "CN", "procedure": "P1", "due_at": "2026-03-02T10:00:00+07:00""#,
        ));
    }
    evs.push(ev(
        "s1",
        "RSCRIPT",
        "received",
        "2026-03-02T08:00:00+07:00",
        r#", "unit": "CN", "procedure": "P2", "due_at": "2026-03-02T10:00:00+07:00""#,
    ));
    evs.push(ev(
        "c1",
        "R-CRLF\r\nBcc: evil@example.com\r\n",
        "received",
        "2026-03-02T08:00:00+07:00",
        r#", "unit": "CN", "procedure": "P1", "due_at": "2026-03-02T10:00:00+07:00""#,
    ));
    evs.push(ev(
        "x1",
        "RXA",
        "received",
        "2026-03-02T08:00:00+07:00",
        r#", "unit": "XA", "procedure": "P1""#,
    ));
    evs
}

const SILENCE: &str = r#"
[[email.silence]]
unit    = "XA"
kind    = "hanging"
ends_at = "2030-01-01T00:00:00Z"
comment = "commune office closed for the flood"
"#;

#[test]
fn grouping_routing_digest_escalation_silence_and_safety() {
    let d = dir("main");
    let cfg = config(&d, SILENCE);
    let mails = replay(&cfg, &province_morning(), "2026-03-04T12:00:00+07:00", &d);
    let names: Vec<&str> = mails.iter().map(|m| m.file.as_str()).collect();

    // 1. grouping: 32 overdue records at CN → ONE e-mail at 10:00:30, to the unit's
    //    addresses and its head, listing all 32 in Vietnamese
    let first = &mails[0];
    assert!(first.file.ends_with("-u-unit_CN.eml"), "{names:?}");
    assert_eq!(
        first.to,
        vec!["cn@example.vn", "motcua.cn@example.vn", "gd.cn@example.vn"]
    );
    assert_eq!(
        first.subject,
        "[overdued] Cảnh báo hồ sơ – Chi nhánh Văn phòng Đăng ký đất đai: 32 quá hạn"
    );
    assert_eq!(first.text.matches("[QUÁ HẠN – MỚI]").count(), 32);
    assert!(first.text.contains("Cập nhật lúc 10:00 02/03/2026"));
    assert!(first
        .text
        .contains("Thủ tục: Đăng ký biến động quyền sử dụng đất (P1)"));
    assert!(first.text.contains("Hạn trả kết quả: 10:00 02/03/2026"));
    assert!(first.text.contains("ban hành văn bản xin lỗi"));
    // the subject is RFC 2047-encoded on the wire, not raw UTF-8
    let raw_subject = first
        .raw
        .lines()
        .find(|l| l.starts_with("Subject:"))
        .unwrap();
    assert!(raw_subject.contains("=?utf-8?"), "{raw_subject}");
    assert!(raw_subject.is_ascii());

    // 2. no header injection: the CR/LF record id stays in the body, stripped
    for m in &mails {
        assert!(
            !m.header_names.iter().any(|h| h == "bcc"),
            "{}: {:?}",
            m.file,
            m.header_names
        );
        assert!(!m.to.iter().any(|a| a.contains("evil")));
    }
    let line = first.text.lines().find(|l| l.contains("R-CRLF")).unwrap();
    assert!(
        line.trim_end()
            .ends_with("] Hồ sơ R-CRLFBcc: evil@example.com"),
        "{line:?}"
    );

    // 3. HTML escaping of the procedure name
    assert!(first
        .html
        .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
    assert!(!first.html.contains("<script>"));
    assert!(first.text.contains("<script>alert(1)</script> Cấp bản sao"));

    // 4. the digest on Tuesday 07:30 lists every open alert of the unit
    let digest = mails
        .iter()
        .find(|m| m.file.ends_with("-d-unit_CN.eml"))
        .expect("a digest for CN");
    assert!(digest.text.contains("Tổng hợp lúc 07:30 03/03/2026"));
    assert_eq!(digest.text.matches("[QUÁ HẠN]").count(), 32);
    assert!(digest
        .subject
        .starts_with("[overdued] Tổng hợp hồ sơ cần xử lý – Chi nhánh"));

    // 5. escalation: 16 working hours after 10:00 Monday = 10:00 Wednesday, the
    //    parent unit's head (only) gets the still-overdue records
    let esc: Vec<&Mail> = mails
        .iter()
        .filter(|m| m.file.ends_with("-u-head_SO.eml"))
        .collect();
    assert_eq!(esc.len(), 1, "{names:?}");
    assert_eq!(esc[0].to, vec!["gd.so@example.vn"]);
    assert_eq!(esc[0].text.matches("BÁO CÁO VƯỢT CẤP").count(), 32);
    assert!(esc[0].text.contains("Cập nhật lúc 10:00 04/03/2026"));

    // 6. the silenced unit gets nothing (its only alert is a silenced hanging)
    assert!(
        !mails.iter().any(|m| m.to.iter().any(|a| a.contains("xa@"))),
        "{names:?}"
    );
    // … while the hanging of CN's records (Tuesday 08:00) arrives as one e-mail
    let hanging: Vec<&Mail> = mails
        .iter()
        .filter(|m| m.text.contains("[CHƯA XỬ LÝ (TREO) – MỚI]"))
        .collect();
    assert_eq!(hanging.len(), 1, "{names:?}");
    assert_eq!(
        hanging[0].text.matches("[CHƯA XỬ LÝ (TREO) – MỚI]").count(),
        32
    );

    // every e-mail is multipart/alternative with both parts
    for m in &mails {
        assert!(m.raw.contains("multipart/alternative"), "{}", m.file);
        assert!(!m.text.is_empty() && !m.html.is_empty(), "{}", m.file);
    }
    // nothing else: first update, hanging update, two digests (Tue, Wed), escalation
    assert_eq!(mails.len(), 5, "{names:?}");
}

#[test]
fn without_the_silence_the_commune_is_told_and_english_works() {
    let d = dir("english");
    let cfg = config(&d, "language = \"en\"\n");
    let mails = replay(&cfg, &province_morning(), "2026-03-03T12:00:00+07:00", &d);
    let xa: Vec<&Mail> = mails
        .iter()
        .filter(|m| m.to == vec!["xa@example.vn", "ct.xa@example.vn"])
        .collect();
    assert_eq!(xa.len(), 1);
    assert_eq!(
        xa[0].subject,
        "[overdued] Record alerts – UBND xã Tam Xuân: 1 hanging"
    );
    assert!(xa[0].text.contains(
        "To do: process the record; if it was already processed, record the action on the system."
    ));
}

#[test]
fn unrouted_goes_to_the_administrator_and_the_forwarding_unit() {
    let d = dir("unrouted");
    let cfg = config(&d, "");
    let evs = vec![
        ev(
            "a",
            "RU",
            "received",
            "2026-03-02T08:00:00+07:00",
            r#", "unit": "CN", "procedure": "P1""#,
        ),
        ev(
            "b",
            "RU",
            "forwarded",
            "2026-03-02T09:00:00+07:00",
            r#", "unit": "NOWHERE""#,
        ),
    ];
    let mails = replay(&cfg, &evs, "2026-03-02T09:10:00+07:00", &d);
    let mut got: Vec<(Vec<String>, bool)> = mails
        .iter()
        .map(|m| {
            (
                m.to.clone(),
                m.text.contains(
                    "không có trong danh mục (do Chi nhánh Văn phòng Đăng ký đất đai chuyển)",
                ),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                vec![
                    "cn@example.vn".to_string(),
                    "motcua.cn@example.vn".to_string(),
                    "gd.cn@example.vn".to_string()
                ],
                true
            ),
            (vec!["hcc@example.vn".to_string()], true),
        ]
    );
}

#[test]
fn a_template_error_names_the_file_and_line() {
    let d = dir("badtpl");
    let t = d.join("tpl/vi");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("subject.txt"), "ok").unwrap();
    std::fs::write(t.join("body.txt"), "line one\n{% if %}\n").unwrap();
    std::fs::write(t.join("body.html"), "<p>ok</p>").unwrap();
    let cfg = config(&d, "templates = \"tpl\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tpl/vi/body.txt:2"), "{err}");
    assert!(err.contains("email.templates"), "{err}");
}
