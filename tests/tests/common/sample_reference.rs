//! The sample reference data of events/reference, loaded into memory, for
//! the tiers that compare the hub with the routing models.

use hub::memory::MemoryReferenceData;

pub fn sample_reference() -> MemoryReferenceData {
    let file = |name: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../events/reference")
            .join(name);
        std::io::BufReader::new(
            std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
    };
    let (reference, rejected) = MemoryReferenceData::load(
        file("sub-icb-sample.csv"),
        file("onspd-sample.csv"),
        file("epraccur-sample.csv"),
    )
    .expect("the sample reference data");
    assert!(rejected.is_empty(), "{rejected:?}");
    reference
}
