//! The reference data adapter against the emulator (batch writes, batch
//! reads in one request, items as the table keeps them), and the loader
//! command `hub-local reference load` (counts, rejected rows with their
//! lines and exit status, idempotence).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use e2e_tests::Emulator;
use hub::aws::{DynamoReferenceData, reference_item_size};
use hub::ports::ReferenceData;
use hub::reference::{Postcode, ReferenceAreas};
use hub::reference::{PostcodeArea, PracticeArea, ReferenceItem, ReferenceRows, postcode_key};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sample(name: &str) -> PathBuf {
    repository().join("events/reference").join(name)
}

fn open(path: &PathBuf) -> std::io::BufReader<std::fs::File> {
    std::io::BufReader::new(
        std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
}

/// The reference table as template.yaml declares it.
async fn reference_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    e2e_tests::create_table(client, "ReferenceTable", name).await;
}

/// Counts the requests a client makes (one per operation, whatever the
/// SDK's own retries).
#[derive(Debug, Clone, Default)]
struct Requests(Arc<AtomicUsize>);

impl Requests {
    fn take(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "Requests"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn counted_client(config: &aws_config::SdkConfig, requests: &Requests) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(config)
            .interceptor(requests.clone())
            .build(),
    )
}

fn sample_items() -> Vec<ReferenceItem> {
    ReferenceRows::open(
        open(&sample("sub-icb-sample.csv")),
        open(&sample("onspd-sample.csv")),
        open(&sample("epraccur-sample.csv")),
    )
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

async fn item_count(client: &aws_sdk_dynamodb::Client, table: &str) -> i32 {
    let mut count = 0;
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        count += page.count;
        start = page.last_evaluated_key;
        if start.is_none() {
            return count;
        }
    }
}

fn postcode(text: &str) -> Postcode {
    Postcode::parse(text).unwrap()
}

fn area(local_authority: &str, icb: Option<&str>, country: &str) -> PostcodeArea {
    PostcodeArea {
        local_authority: local_authority.into(),
        icb_sub_location: icb.map(str::to_owned),
        country: country.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_s_places_are_read_with_one_batch_request() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    reference_table(&client, "Reference").await;
    let requests = Requests::default();
    let store = DynamoReferenceData::new(counted_client(&emulator.config, &requests), "Reference");

    let items = sample_items();
    assert_eq!(items.len(), 19);
    store.put_batch(&items).await.unwrap();
    // 19 items: one BatchWriteItem.
    assert_eq!(requests.take(), 1);

    // A change of address and of GP: two postcodes and two practices, as
    // dispatch asks for them, plus one of each unknown.
    let (new, old, unknown) = (
        postcode("LS17 7DF"),
        postcode("wf14 0bq"),
        postcode("ZZ99 9ZZ"),
    );
    let areas = store
        .locate_many(
            &[&new, &old, &unknown, &new],
            &["B86056", "b85612", "Z99999", " B86056 "],
        )
        .await
        .unwrap();
    assert_eq!(requests.take(), 1, "one BatchGetItem, repeats included");
    assert_eq!(
        areas,
        ReferenceAreas {
            postcodes: HashMap::from([
                (new.clone(), area("E08000035", Some("15F"), "E92000001")),
                (old.clone(), area("E08000034", Some("X2C4Y"), "E92000001")),
            ]),
            practices: HashMap::from([
                ("B86056".to_owned(), "15F".to_owned()),
                ("B85612".to_owned(), "X2C4Y".to_owned()),
            ]),
        }
    );

    // The single lookups are batch reads too (dispatch may BatchGetItem
    // only), and see what the batch sees.
    assert_eq!(
        store.postcode_area(&postcode("CF10 1EP")).await.unwrap(),
        Some(area("W06000015", None, "W92000004"))
    );
    assert_eq!(
        store.practice_area("a83627").await.unwrap().as_deref(),
        Some("84H")
    );
    assert_eq!(store.postcode_area(&unknown).await.unwrap(), None);
    assert_eq!(store.practice_area("Z99999").await.unwrap(), None);
    assert_eq!(requests.take(), 4);
    assert_eq!(
        store.locate_many(&[], &[]).await.unwrap(),
        ReferenceAreas::default()
    );
    assert_eq!(requests.take(), 0, "nothing to read, no request");

    // Dispatch locates a child (both places of a move) with one request.
    let location = hub::app::generic::locate(
        &store,
        Some(&new),
        Some(&old),
        Some("b86056"),
        Some("B85612"),
    )
    .await
    .unwrap();
    assert_eq!(requests.take(), 1);
    assert_eq!(location.practice.as_deref(), Some("B86056"));
    assert_eq!(location.practice_icb.as_deref(), Some("15F"));
    assert_eq!(location.previous_practice_icb.as_deref(), Some("X2C4Y"));
    assert_eq!(
        location.previous_postcode_area,
        Some(area("E08000034", Some("X2C4Y"), "E92000001"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn items_are_kept_as_documented_and_writing_again_overwrites() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    reference_table(&client, "Reference").await;
    let store = DynamoReferenceData::new(client.clone(), "Reference");
    let items = sample_items();
    store.put_batch(&items).await.unwrap();
    store.put_batch(&items).await.unwrap();
    assert_eq!(item_count(&client, "Reference").await, 19);

    let get = async |key: &str| {
        client
            .get_item()
            .table_name("Reference")
            .key("refKey", AttributeValue::S(key.to_owned()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap()
    };
    let s = |text: &str| AttributeValue::S(text.to_owned());
    let terminated = get("POSTCODE#LS17 7DZ").await;
    assert_eq!(
        terminated,
        HashMap::from([
            ("refKey".to_owned(), s("POSTCODE#LS17 7DZ")),
            ("localAuthority".to_owned(), s("E08000035")),
            ("icbSubLocation".to_owned(), s("15F")),
            ("country".to_owned(), s("E92000001")),
            ("terminated".to_owned(), AttributeValue::Bool(true)),
        ])
    );
    // Outside England: no sub-ICB location attribute at all.
    let cardiff = get("POSTCODE#CF10 1EP").await;
    assert!(!cardiff.contains_key("icbSubLocation"), "{cardiff:?}");
    assert_eq!(cardiff["terminated"], AttributeValue::Bool(false));
    let practice = get("PRACTICE#B86056").await;
    assert_eq!(
        practice,
        HashMap::from([
            ("refKey".to_owned(), s("PRACTICE#B86056")),
            ("icbSubLocation".to_owned(), s("15F")),
        ])
    );

    // A later load that moves a practice overwrites it.
    let moved = ReferenceItem::Practice(PracticeArea {
        practice: "b86056".into(),
        icb_sub_location: "X2C4Y".into(),
    });
    store.put_batch(&[moved]).await.unwrap();
    assert_eq!(
        store.practice_area("B86056").await.unwrap().as_deref(),
        Some("X2C4Y")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn many_items_go_25_to_a_request_and_a_repeated_key_keeps_its_last_item() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);
    reference_table(&client, "Reference").await;
    let requests = Requests::default();
    let store = DynamoReferenceData::new(counted_client(&emulator.config, &requests), "Reference");

    let mut items: Vec<ReferenceItem> = (0..120)
        .map(|n| ReferenceItem::Postcode {
            postcode: postcode(&format!("LS{} {}AB", n / 10 + 1, n % 10)),
            area: area("E08000035", Some("15F"), "E92000001"),
            terminated: false,
        })
        .collect();
    // The same postcode twice in one batch of 25: BatchWriteItem would
    // refuse the request, so the last item wins, as sequential puts would.
    items[3] = ReferenceItem::Postcode {
        postcode: postcode("LS1 2AB"),
        area: area("E08000034", Some("X2C4Y"), "E92000001"),
        terminated: true,
    };
    store.put_batch(&items).await.unwrap();
    assert_eq!(requests.take(), 5);
    assert_eq!(item_count(&client, "Reference").await, 119);
    assert_eq!(
        store
            .postcode_area(&postcode("LS1 2AB"))
            .await
            .unwrap()
            .unwrap()
            .local_authority,
        "E08000034"
    );
    assert_eq!(postcode_key(&postcode("ls1 2ab")), "POSTCODE#LS1 2AB");

    // 150 keys in one call: BatchGetItem takes 100 at a time.
    let wanted: Vec<Postcode> = (0..150)
        .map(|n| postcode(&format!("LS{} {}AB", n / 10 + 1, n % 10)))
        .collect();
    requests.take();
    let areas = store
        .locate_many(&wanted.iter().collect::<Vec<_>>(), &[])
        .await
        .unwrap();
    assert_eq!(areas.postcodes.len(), 119);
    assert_eq!(requests.take(), 2);
}

#[test]
fn an_item_s_size_is_counted_as_dynamodb_counts_it() {
    let item = ReferenceItem::Postcode {
        postcode: postcode("LS17 7DF"),
        area: area("E08000035", Some("15F"), "E92000001"),
        terminated: false,
    };
    // refKey + POSTCODE#LS17 7DF, localAuthority + 9, icbSubLocation + 3,
    // country + 9, terminated + 1.
    assert_eq!(
        reference_item_size(&item),
        6 + 17 + 14 + 9 + 14 + 3 + 7 + 9 + 10 + 1
    );
}

// --- The command ----------------------------------------------------------------

fn hub_local() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("target"));
    let binary = target.join("debug/hub-local");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace --bins`",
        binary.display()
    );
    binary
}

struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn load(emulator: &Emulator, table: &str, onspd: &PathBuf, extra: &[&str]) -> Run {
    let output = tokio::process::Command::new(hub_local())
        .args(["reference", "load", "--sub-icb"])
        .arg(sample("sub-icb-sample.csv"))
        .arg("--onspd")
        .arg(onspd)
        .arg("--epraccur")
        .arg(sample("epraccur-sample.csv"))
        .args(["--endpoint", &emulator.endpoint, "--table", table])
        .args(extra)
        .output()
        .await
        .unwrap();
    Run {
        status: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_command_reports_counts_and_rejected_lines_and_can_run_again() {
    let emulator = Emulator::start().await;
    let client = aws_sdk_dynamodb::Client::new(&emulator.config);

    // The sample ONSPD with three bad rows appended (lines 16 to 18).
    let directory = std::env::temp_dir().join(format!("hub-reference-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let onspd = directory.join("onspd.csv");
    let sample_text = std::fs::read_to_string(sample("onspd-sample.csv")).unwrap();
    let good = sample_text
        .lines()
        .find(|line| line.starts_with("\"LS177DF\""))
        .unwrap();
    let bad = [
        good.replace("\"LS17 7DF\",\"198001\"", "\"LS17 7D\",\"198001\""),
        good.replace("E92000001", "E92000009"),
        good.replacen(",", ",\"", 1),
    ];
    std::fs::write(&onspd, format!("{sample_text}{}\r\n", bad.join("\r\n"))).unwrap();

    // No table yet: refused before anything is read.
    let missing = load(&emulator, "Reference", &onspd, &[]).await;
    assert_eq!(missing.status, Some(1), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("--create-table"),
        "{}",
        missing.stderr
    );

    let first = load(&emulator, "Reference", &onspd, &["--create-table"]).await;
    assert_eq!(first.status, Some(3), "{}\n{}", first.stdout, first.stderr);
    for expected in [
        "Loaded 19 items",
        "sub-ICB locations in the lookup: 4",
        "postcodes: 14 (1 terminated, 5 without a sub-ICB location)",
        "practices: 5 (1 with a commissioner outside the lookup)",
        "rejected rows: 3 (3 in ONSPD)",
    ] {
        assert!(
            first.stdout.contains(expected),
            "{expected}\n{}",
            first.stdout
        );
    }
    let rejected: Vec<&str> = first
        .stderr
        .lines()
        .filter(|line| line.starts_with("rejected: "))
        .collect();
    assert_eq!(rejected.len(), 3, "{}", first.stderr);
    assert!(
        rejected[0].starts_with("rejected: ONSPD line 16: pcds:"),
        "{}",
        rejected[0]
    );
    assert!(
        rejected[1].starts_with("rejected: ONSPD line 17: ctry:"),
        "{}",
        rejected[1]
    );
    assert!(
        rejected[2].starts_with("rejected: ONSPD line 18: "),
        "{}",
        rejected[2]
    );
    assert_eq!(item_count(&client, "Reference").await, 19);

    // Again, without the bad rows: the same table, and a clean exit.
    let again = load(&emulator, "Reference", &sample("onspd-sample.csv"), &[]).await;
    assert_eq!(again.status, Some(0), "{}\n{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains("rejected rows: 0"),
        "{}",
        again.stdout
    );
    assert_eq!(item_count(&client, "Reference").await, 19);

    // --check reads and reports the same, and writes nothing.
    let checked = load(&emulator, "Unwritten", &onspd, &["--check"]).await;
    assert_eq!(
        checked.status,
        Some(3),
        "{}\n{}",
        checked.stdout,
        checked.stderr
    );
    assert!(
        checked.stdout.contains("Read 19 items"),
        "{}",
        checked.stdout
    );
    assert!(
        checked.stdout.contains("rejected rows: 3"),
        "{}",
        checked.stdout
    );
    assert!(
        checked.stderr.contains("ONSPD line 16"),
        "{}",
        checked.stderr
    );
    let tables = client
        .list_tables()
        .send()
        .await
        .unwrap()
        .table_names
        .unwrap_or_default();
    assert_eq!(tables, ["Reference"]);

    // A file without the columns needed stops the load on line 1.
    let headerless = directory.join("headerless.csv");
    std::fs::write(&headerless, "pcd,lat,long\n\"LS17 7DF\",1,2\n").unwrap();
    let refused = load(&emulator, "Reference", &headerless, &[]).await;
    assert_eq!(refused.status, Some(1));
    assert!(
        refused
            .stderr
            .contains("ONSPD line 1: the header has no column pcds"),
        "{}",
        refused.stderr
    );
    let _ = std::fs::remove_dir_all(&directory);
}
