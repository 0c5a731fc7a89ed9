//! The unit pages in a real browser: Debian's headless Chromium driven over
//! WebDriver (`chromedriver`, from `scripts/test.sh`) by `fantoccini`, against a
//! daemon fed through the test broker and e-mailing a real SMTP server.
//!
//! A unit head opens the unit link of the e-mail they received, finds their
//! records and times, opens one and acknowledges it with a reason; the next
//! reminder omits it, the metric counts it, a restart keeps it; a tampered or
//! expired link shows no data and a cross-site POST (even one carrying a valid
//! token and anti-forgery value) is refused. Screenshots of each page go to
//! `target/screenshots/` (the README shows copies from `docs/screenshots/`).

use crate::harness::{free_port, get, metric, service, wait_for};
use crate::smtp_harness::{python, received, SmtpSink};

use fantoccini::{Client, ClientBuilder, Locator};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECRET: &str = "pages-test-secret-0123456789";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(dir: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_overdued"))
            .args(["--log-level", "info,librdkafka=warn", "run", "--config"])
            .arg(dir.join("overdued.toml"))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn setup(dir: &Path, brokers: &str, topic: &str, http: u16, smtp: u16) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ui.secret"), SECRET).unwrap();
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            r#"
[calendar]
periods = ["00:00-24:00"]
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[directory]
units = "units.csv"
procedures = "procedures.csv"
[rules]
hanging_after_hours = 0.002      # 7.2 s
[kafka]
brokers = "{brokers}"
topic = "{topic}"
group_id = "{topic}.group"
dead_letter_topic = "{topic}.dlq"
[http]
listen = "127.0.0.1:{http}"
ui_secret = "file:ui.secret"
[state]
dir = "state"
[email]
batch_at = []
smtp_url = "smtp://127.0.0.1:{smtp}"
from = "overdued <no-reply@example.vn>"
admin = "hcc@example.vn"
group_wait = "2s"
group_interval = "5s"
repeat_interval = "25s"
digest_at = ""
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("units.csv"),
        "code,name,level,parent,emails,head_email\n\
         SO,Sở Tư pháp,province,,so@example.vn,giamdoc@example.vn\n\
         U1,Phòng Tư pháp Tam Kỳ,district,SO,u1@example.vn,h1@example.vn\n\
         U2,UBND xã Tam Xuân,commune,,u2@example.vn,\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("procedures.csv"),
        "code,name,sector,duration,duration_unit\nP1,Chứng thực bản sao,TP,3,working_days\n",
    )
    .unwrap();
}

/// The e-mails to `addr` (text bodies), in arrival order.
fn mails_to(dir: &Path, addr: &str) -> Vec<String> {
    received(dir)
        .into_iter()
        .filter(|m| m.rcpt_tos.iter().any(|t| t == addr))
        .map(|m| m.text.unwrap_or_default())
        .collect()
}

/// Local `HH:MM dd/mm/yyyy` in Vietnam (UTC+7), as the pages print times.
fn local(t: chrono::DateTime<chrono::Utc>) -> String {
    (t + chrono::Duration::hours(7))
        .format("%H:%M %d/%m/%Y")
        .to_string()
}

async fn browser(driver_port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,900"],
            "binary": std::env::var("OVERDUED_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a WebDriver session on chromedriver")
}

async fn screenshot(c: &Client, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[test]
fn a_unit_head_acknowledges_from_the_emailed_link_and_is_not_reminded() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let Some(py) = python() else {
        return;
    };
    let Some(driver) = service("OVERDUED_TEST_CHROMEDRIVER") else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let topic = format!("records.pages.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-pages-{suffix}"));
    let (http, smtp, dport) = (free_port(), free_port(), free_port());
    setup(&dir, &brokers, &topic, http, smtp);
    crate::harness::create_topics(
        &brokers,
        &[
            NewTopic::new(&topic, 2, TopicReplication::Fixed(1)),
            NewTopic::new(&format!("{topic}.dlq"), 1, TopicReplication::Fixed(1)),
        ],
    );
    let sink_dir = dir.join("smtp");
    let _sink = SmtpSink::start(&py, smtp, &sink_dir, &[]);
    let _driver = Proc(
        Command::new(&driver)
            .arg(format!("--port={dport}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver"),
    );
    let mut daemon = start_daemon(&dir);

    // two records at U1 and one at U2 hang 7.2 s after receipt
    let received_at = chrono::Utc::now();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for (id, unit) in [("R1", "U1"), ("R2", "U1"), ("R3", "U2")] {
        let v = serde_json::json!({
            "event_id": format!("{id}-1"), "record_id": id, "type": "received",
            "at": received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "unit": unit, "procedure": "P1"
        })
        .to_string();
        producer
            .send(BaseRecord::to(&topic).key(id).payload(&v))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    wait_for("the e-mail to U1 naming R1 and R2", 120, || {
        mails_to(&sink_dir, "u1@example.vn")
            .iter()
            .any(|m| m.contains("Hồ sơ R1") && m.contains("Hồ sơ R2"))
    });
    let first = mails_to(&sink_dir, "u1@example.vn").remove(0);
    let unit_link = first
        .split_whitespace()
        .find(|w| w.contains("/ui/unit/U1?t="))
        .unwrap_or_else(|| panic!("no unit link in:\n{first}"))
        .to_string();
    assert!(
        unit_link.starts_with(&format!("http://127.0.0.1:{http}/ui/unit/U1?t=u~")),
        "{unit_link}"
    );
    assert!(first.contains("/ui/record/R1?t="), "{first}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(browser(dport));
    rt.block_on(async {
        // the unit page: its two records (not U2's), with their times
        c.goto(&unit_link).await.unwrap();
        let text = body_text(&c).await;
        assert!(text.contains("Phòng Tư pháp Tam Kỳ"), "{text}");
        for id in ["R1", "R2"] {
            let row = c
                .find(Locator::Css(&format!("tr[data-record=\"{id}\"]")))
                .await
                .unwrap_or_else(|_| panic!("no row for {id} in:\n{text}"));
            let row = row.text().await.unwrap();
            assert!(row.contains(&local(received_at)), "{row}");
            assert!(row.contains("Chưa xử lý (treo)"), "{row}");
        }
        assert!(!text.contains("R3"), "{text}");
        screenshot(&c, "unit.png").await;

        // the record page, reached by its link; acknowledge with a reason
        c.find(Locator::LinkText("R1"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let text = body_text(&c).await;
        assert!(text.contains("Chứng thực bản sao (P1)"), "{text}");
        assert!(text.contains("Phòng Tư pháp Tam Kỳ"), "{text}");
        screenshot(&c, "record.png").await;
        let form_t = c
            .find(Locator::Css("form#ack-form input[name=t]"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap();
        let form_csrf = c
            .find(Locator::Css("form#ack-form input[name=csrf]"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap();
        c.find(Locator::Css("select#reason"))
            .await
            .unwrap()
            .select_by_value("waiting_for_citizen")
            .await
            .unwrap();
        c.find(Locator::Css("input#text"))
            .await
            .unwrap()
            .send_keys("Chờ công dân nộp bản chính")
            .await
            .unwrap();
        c.find(Locator::Css("button#ack-submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = format!("{} {}", c.current_url().await.unwrap(), body_text(&c).await);
        let row = c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("tr[data-reason=\"waiting_for_citizen\"]"))
            .await
            .unwrap_or_else(|e| panic!("{e}: no acknowledgement row after the POST: {after}"))
            .text()
            .await
            .unwrap();
        assert!(row.contains("Chờ công dân nộp bản chính"), "{row}");
        assert!(row.contains("đang có hiệu lực"), "{row}");
        screenshot(&c, "record-acknowledged.png").await;

        // a cross-site POST, even with the valid token and anti-forgery value
        // copied, is refused (the browser says where it comes from)
        let evil = format!(
            "<form id=f method=post action='http://127.0.0.1:{http}/ui/record/R2/ack'>\
             <input name=t value='{form_t}'><input name=csrf value='{form_csrf}'>\
             <input name=reason value=other><input name=text value=forged></form>\
             <script>document.getElementById('f').submit()</script>"
        );
        let evil: String = evil
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        c.goto(&format!("data:text/html,{evil}")).await.unwrap();
        c.wait()
            .for_element(Locator::Css("#message"))
            .await
            .unwrap();
        let text = body_text(&c).await;
        assert!(text.contains("Yêu cầu từ trang khác bị từ chối"), "{text}");

        // a tampered link and an expired one show no data
        let mut tampered = unit_link.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        c.goto(&tampered).await.unwrap();
        let text = body_text(&c).await;
        assert!(text.contains("Đường dẫn không hợp lệ"), "{text}");
        assert!(!text.contains("R1") && !text.contains("R2"), "{text}");
        let links = overdued::link::Links::new(
            overdued::config::common::Secret::new(SECRET),
            &format!("http://127.0.0.1:{http}"),
            3600 * 1_000_000,
        );
        let past = chrono::Utc::now().timestamp_micros() - 1_000_000;
        let expired = links.token(&overdued::link::Scope::Unit("U1".into()), past);
        c.goto(&format!("http://127.0.0.1:{http}/ui/unit/U1?t={expired}"))
            .await
            .unwrap();
        let text = body_text(&c).await;
        assert!(text.contains("Đường dẫn đã hết hạn"), "{text}");
        assert!(!text.contains("R1"), "{text}");
        screenshot(&c, "expired.png").await;

        // the parent head's link opens the unit under it; the province page is
        // the administrator's
        let now = chrono::Utc::now().timestamp_micros();
        c.goto(&links.unit_url("SO", now)).await.unwrap();
        let text = body_text(&c).await;
        assert!(text.contains("Phòng Tư pháp Tam Kỳ"), "{text}");
        c.goto(&links.province_url(now)).await.unwrap();
        let text = body_text(&c).await;
        assert!(text.contains("Toàn tỉnh"), "{text}");
        screenshot(&c, "province.png").await;
    });

    // counted once, by reason; listed in the API
    let (_, m) = get(http, "/metrics").unwrap();
    assert_eq!(
        metric(
            &m,
            "overdued_acknowledgements_total{reason=\"waiting_for_citizen\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "overdued_acknowledgements_total{reason=\"other\"}"),
        0.0
    );
    // the next reminder (repeat_interval 25 s) lists R2, not R1
    let before = mails_to(&sink_dir, "u1@example.vn").len();
    wait_for("a reminder to U1", 90, || {
        mails_to(&sink_dir, "u1@example.vn").len() > before
    });
    let reminder = mails_to(&sink_dir, "u1@example.vn").pop().unwrap();
    assert!(reminder.contains("Hồ sơ R2"), "{reminder}");
    assert!(!reminder.contains("Hồ sơ R1 "), "{reminder}");
    assert!(
        !reminder.lines().any(|l| l.trim_end().ends_with("Hồ sơ R1")),
        "{reminder}"
    );

    // a restart keeps the acknowledgement
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status();
    let _ = daemon.0.wait();
    daemon = start_daemon(&dir);
    wait_for("the restarted daemon ready", 120, || {
        get(http, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    let (_, acks) = get(http, "/api/v1/acknowledgements").unwrap();
    let v: serde_json::Value = serde_json::from_str(&acks).unwrap();
    let list = v["acknowledgements"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{acks}");
    assert_eq!(list[0]["record_id"], "R1");
    assert_eq!(list[0]["reason"], "waiting_for_citizen");
    assert_eq!(list[0]["active"], true);
    rt.block_on(async {
        let now = chrono::Utc::now().timestamp_micros();
        c.goto(&links_for(http).record_url("U1", "R1", now))
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::Css("tr[data-reason=\"waiting_for_citizen\"]"))
            .await
            .unwrap();
        c.clone().close().await.unwrap();
    });
    drop(daemon);
    std::fs::remove_dir_all(&dir).ok();
}

fn links_for(http: u16) -> overdued::link::Links {
    overdued::link::Links::new(
        overdued::config::common::Secret::new(SECRET),
        &format!("http://127.0.0.1:{http}"),
        3600 * 1_000_000,
    )
}
