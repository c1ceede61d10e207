//! Read + validate + store-request building for every NEMS example message,
//! in XML and in JSON: what the publish function does with a body before its
//! one DynamoDB call. Run: cargo bench -p hub --bench read_validate

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hub::events::StoredEvent;
use hub::{Encoding, EventMessage};

fn fixtures() -> Vec<(String, Encoding, String)> {
    let events = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut fixtures = Vec::new();
    for (folder, encoding, extension) in [
        ("nems", Encoding::Xml, "xml"),
        ("nems-json", Encoding::Json, "json"),
        ("derived", Encoding::Xml, "xml"),
        ("derived", Encoding::Json, "json"),
    ] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(events.join(folder))
            .expect("events folder")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == extension))
            .collect();
        paths.sort();
        for path in paths {
            let body = std::fs::read_to_string(&path).expect("fixture");
            // The published birth notification is refused by design (invalid
            // mother's NHS number); its valid form is under derived/.
            if EventMessage::read(&body, encoding).is_err() {
                continue;
            }
            let name = format!(
                "{}/{extension}",
                path.file_stem().unwrap_or_default().to_string_lossy()
            );
            fixtures.push((name, encoding, body));
        }
    }
    fixtures
}

fn read_validate(c: &mut Criterion) {
    let received_at = time::OffsetDateTime::UNIX_EPOCH;
    let mut group = c.benchmark_group("read_validate");
    for (name, encoding, body) in fixtures() {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(&name, |b| {
            b.iter(|| {
                let message = EventMessage::read(black_box(&body), encoding).expect("valid");
                black_box(StoredEvent::new(
                    &message,
                    encoding,
                    &body,
                    received_at,
                    hub::events::Retention::DEFAULT,
                ))
            })
        });
    }
    group.finish();
}

/// Where the time goes, for the 11 KB vaccination: the tree alone, the
/// whole read and validation, and the payload hash.
fn breakdown(c: &mut Criterion) {
    let events = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let xml = std::fs::read_to_string(events.join("nems/vaccinations-1-new.xml")).expect("fixture");
    let json =
        std::fs::read_to_string(events.join("nems-json/vaccinations-1-new.json")).expect("fixture");
    let mut group = c.benchmark_group("breakdown/vaccinations-1-new");
    group.bench_function("tree/xml", |b| {
        b.iter(|| black_box(hub::fhir::read_xml(black_box(&xml))))
    });
    group.bench_function("tree/json", |b| {
        b.iter(|| black_box(hub::fhir::read_json(black_box(&json))))
    });
    group.bench_function("read_validate/xml", |b| {
        b.iter(|| black_box(EventMessage::read(black_box(&xml), Encoding::Xml)))
    });
    group.bench_function("sha256", |b| {
        b.iter(|| black_box(hub::events::sha256_hex(black_box(&xml))))
    });
    group.finish();
}

criterion_group!(benches, read_validate, breakdown);
criterion_main!(benches);
