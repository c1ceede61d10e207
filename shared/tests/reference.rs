//! Reference data: postcode normalisation, the CSV field splitter, the ONSPD
//! and epraccur.csv readers (the sample files, both ONSPD header variants,
//! every kind of bad row with its line number) and the in-memory port.

use std::io::{BufReader, Cursor};
use std::path::PathBuf;

use hub::reference::{
    CsvRecord, EPRACCUR_COLUMNS, EpraccurReader, MemoryReferenceData, OnspdReader, Postcode,
    PostcodeArea, PracticeArea, PracticeStatus, ReferenceData, ReferenceError, YearMonth, collect,
    is_country_code,
};

fn reference_file(name: &str) -> BufReader<std::fs::File> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events/reference")
        .join(name);
    BufReader::new(std::fs::File::open(&path).unwrap_or_else(|_| panic!("{}", path.display())))
}

fn postcode(text: &str) -> Postcode {
    Postcode::parse(text).unwrap()
}

fn area(local_authority: &str, icb_sub_location: &str, country: &str) -> PostcodeArea {
    PostcodeArea {
        local_authority: local_authority.into(),
        icb_sub_location: icb_sub_location.into(),
        country: country.into(),
    }
}

// --- Postcodes -------------------------------------------------------------

#[test]
fn postcodes_are_normalised_to_the_pcds_form() {
    for (given, expected) in [
        ("LS17 7DF", "LS17 7DF"),
        ("ls17 7df", "LS17 7DF"),
        ("LS177DF", "LS17 7DF"),
        ("  Ls17   7dF ", "LS17 7DF"),
        ("LS17\t7DF", "LS17 7DF"),
        ("DH1 2TF", "DH1 2TF"),
        ("dh12tf", "DH1 2TF"),
        // The ONSPD's 7- and 8-character forms (pcd, pcd2).
        ("DH1 2TF", "DH1 2TF"),
        ("DH1  2TF", "DH1 2TF"),
        ("M1  1AE", "M1 1AE"),
        // Every outward shape: A9, A99, A9A, AA9, AA99, AA9A.
        ("M1 1AE", "M1 1AE"),
        ("B33 8TH", "B33 8TH"),
        ("W1A 0AX", "W1A 0AX"),
        ("CR2 6XH", "CR2 6XH"),
        ("DN55 1PT", "DN55 1PT"),
        ("EC1A 1BB", "EC1A 1BB"),
        ("gir0aa", "GIR 0AA"),
    ] {
        let parsed = Postcode::parse(given).unwrap_or_else(|_| panic!("{given:?}"));
        assert_eq!(parsed.as_str(), expected, "{given:?}");
        assert_eq!(parsed.to_string(), expected);
        assert_eq!(expected.parse::<Postcode>().unwrap(), parsed);
    }
    let leeds = postcode("ls177df");
    assert_eq!((leeds.outward(), leeds.inward()), ("LS17", "7DF"));
}

#[test]
fn garbage_is_not_a_postcode() {
    for garbage in [
        "",
        "   ",
        "LS17",
        "7DF",
        "LS17 7D",
        "LS17 7DFF",
        "LS177 DF",
        "L S17 7DF",
        "LS17 7 DF",
        "LS17-7DF",
        "1S17 7DF",
        "LSX7 7DF",
        "LS17 ADF",
        "LS17 77F",
        "LS1777DF",
        "ABCDE 1AA",
        "GIR 1AA",
        "ŁS17 7DF",
        "LS17 7DF LS17 7DF",
        "XXXXXXXXXXXXXXXXXXXXXXXX",
        "9912003888",
    ] {
        assert!(
            Postcode::parse(garbage).is_err(),
            "{garbage:?} was accepted"
        );
    }
}

#[test]
fn a_postcode_shows_only_its_outward_code_in_debug_output() {
    let debug = format!("{:?}", postcode("LS17 7DF"));
    assert_eq!(debug, "Postcode(LS17 ***)");
    // Nor does an error quote the text it refused.
    let error = Postcode::parse("WF14 0B").unwrap_err().to_string();
    assert!(!error.contains("WF14"), "{error}");
}

#[test]
fn a_postcode_serialises_as_its_text_and_refuses_garbage_on_reading() {
    let json = serde_json::to_string(&postcode("ls17 7df")).unwrap();
    assert_eq!(json, "\"LS17 7DF\"");
    let read: Postcode = serde_json::from_str("\"wf140bq\"").unwrap();
    assert_eq!(read.as_str(), "WF14 0BQ");
    assert!(serde_json::from_str::<Postcode>("\"not one\"").is_err());
}

// --- The CSV splitter ------------------------------------------------------

fn split(line: &str) -> Result<Vec<String>, String> {
    let mut record = CsvRecord::default();
    record.parse_line(line)?;
    Ok(record.iter().map(str::to_owned).collect())
}

#[test]
fn fields_are_split_as_rfc_4180_says() {
    assert_eq!(split("a,b,c").unwrap(), ["a", "b", "c"]);
    assert_eq!(split("").unwrap(), [""]);
    assert_eq!(split(",").unwrap(), ["", ""]);
    assert_eq!(split("a,,c,").unwrap(), ["a", "", "c", ""]);
    assert_eq!(split(r#""a","b""#).unwrap(), ["a", "b"]);
    assert_eq!(split(r#""",x"#).unwrap(), ["", "x"]);
    assert_eq!(split(r#""one, two",3"#).unwrap(), ["one, two", "3"]);
    assert_eq!(
        split(r#""say ""hi""","""""#).unwrap(),
        [r#"say "hi""#, r#"""#]
    );
    assert_eq!(split(r#"1,"x",-2.5"#).unwrap(), ["1", "x", "-2.5"]);
    assert_eq!(split(" a , b ").unwrap(), [" a ", " b "]);
}

#[test]
fn malformed_quoting_is_refused_and_names_the_field() {
    let unclosed = split(r#"a,"b,c"#).unwrap_err();
    assert!(
        unclosed.contains("field 2") && unclosed.contains("quote"),
        "{unclosed}"
    );
    let trailing = split(r#""a"b,c"#).unwrap_err();
    assert!(trailing.contains("field 1") && trailing.contains("after its closing quote"));
    let bare = split(r#"a,b"c,d"#).unwrap_err();
    assert!(
        bare.contains("field 2") && bare.contains("not quoted"),
        "{bare}"
    );
}

#[test]
fn a_record_is_reused_from_line_to_line() {
    let mut record = CsvRecord::default();
    record.parse_line("a,b,c,d").unwrap();
    record.parse_line(r#""x""#).unwrap();
    assert_eq!(record.len(), 1);
    assert_eq!(record.get(0), Some("x"));
    assert_eq!(record.get(1), None);
}

// --- ONSPD ------------------------------------------------------------------

const HEADER: &str = "pcd,pcd2,pcds,dointr,doterm,oslaua,osward,ctry,rgn,sicbl,lat,long";

/// A row in the layout of [`HEADER`].
fn row(pcds: &str, doterm: &str, oslaua: &str, ctry: &str, sicbl: &str) -> String {
    format!(
        r#""{pcds}","{pcds}","{pcds}","198001","{doterm}","{oslaua}","E99999999","{ctry}","E99999999","{sicbl}",53.85,-1.53"#
    )
}

fn read_onspd(text: &str) -> (Vec<hub::reference::PostcodeRecord>, Vec<ReferenceError>) {
    collect(OnspdReader::new(Cursor::new(text.to_owned())).unwrap())
}

#[test]
fn the_onspd_sample_reads_without_error() {
    let reader = OnspdReader::new(reference_file("onspd-sample.csv")).unwrap();
    assert_eq!(reader.columns().icb_sub_location.1, "sicbl");
    let (records, errors) = collect(reader);
    assert_eq!(errors, []);
    assert_eq!(records.len(), 12);

    let find = |wanted: &str| {
        records
            .iter()
            .find(|record| record.postcode.as_str() == wanted)
            .unwrap_or_else(|| panic!("{wanted} is not in the sample"))
    };
    let leeds = find("LS17 7DF");
    assert_eq!(leeds.area, area("E08000035", "E38000225", "E92000001"));
    assert!(leeds.is_live());
    assert_eq!(find("DH1 2TF").area.local_authority, "E06000047");
    assert_eq!(find("DH6 2TH").area.local_authority, "E06000047");
    assert_eq!(find("WF14 0BQ").area.local_authority, "E08000034");
    assert_eq!(find("CF10 1EP").area.country, "W92000004");
    assert_eq!(find("EH1 1YZ").area.country, "S92000003");

    let terminated: Vec<_> = records.iter().filter(|record| !record.is_live()).collect();
    assert_eq!(terminated.len(), 1);
    assert_eq!(terminated[0].postcode.as_str(), "LS17 7DZ");
    assert_eq!(
        terminated[0].terminated,
        Some(YearMonth {
            year: 2006,
            month: 7
        })
    );
    assert!(
        records
            .iter()
            .all(|record| is_country_code(&record.area.country))
    );
}

#[test]
fn rows_carry_their_line_numbers() {
    let text = format!(
        "{HEADER}\n{}\n\n{}\n",
        row("LS17 7DF", "", "E08000035", "E92000001", "E38000225"),
        row("WF14 0BQ", "", "E08000034", "E92000001", "E38000254"),
    );
    let lines: Vec<usize> = OnspdReader::new(Cursor::new(text))
        .unwrap()
        .map(|row| row.unwrap().0)
        .collect();
    // The blank line 3 is skipped, and still counted.
    assert_eq!(lines, [2, 4]);
}

#[test]
fn the_older_header_names_the_icb_sub_location_column_ccg() {
    let header = HEADER.replace("sicbl", "ccg");
    let text = format!(
        "{header}\n{}\n",
        row("ls177df", "", "E08000035", "E92000001", "E38000225")
    );
    let reader = OnspdReader::new(Cursor::new(text)).unwrap();
    assert_eq!(reader.columns().icb_sub_location.1, "ccg");
    let (records, errors) = collect(reader);
    assert_eq!(errors, []);
    assert_eq!(records[0].postcode.as_str(), "LS17 7DF");
    assert_eq!(records[0].area, area("E08000035", "E38000225", "E92000001"));
}

#[test]
fn sicbl_is_preferred_when_both_columns_are_present() {
    let header = HEADER.replace("rgn", "ccg");
    let reader = OnspdReader::new(Cursor::new(format!("{header}\n"))).unwrap();
    assert_eq!(reader.columns().icb_sub_location.1, "sicbl");
}

#[test]
fn header_names_are_matched_without_regard_to_case_quotes_or_a_byte_order_mark() {
    let header: Vec<String> = HEADER
        .split(',')
        .map(|name| format!("\"{}\"", name.to_ascii_uppercase()))
        .collect();
    let text = format!(
        "\u{feff}{}\r\n{}\r\n",
        header.join(","),
        row("DH1 2TF", "", "E06000047", "E92000001", "E38000234")
    );
    let (records, errors) = collect(OnspdReader::new(Cursor::new(text)).unwrap());
    assert_eq!(errors, []);
    assert_eq!(records[0].area.local_authority, "E06000047");
}

#[test]
fn year_stamped_area_columns_are_accepted_when_unambiguous() {
    let header = HEADER
        .replace("oslaua", "lad25cd")
        .replace("sicbl", "sicbl24cd")
        .replace("ctry", "ctry25cd");
    let text = format!(
        "{header}\n{}\n",
        row("LS17 7DF", "", "E08000035", "E92000001", "E38000225")
    );
    let reader = OnspdReader::new(Cursor::new(text)).unwrap();
    assert_eq!(reader.columns().local_authority.1, "lad25cd");
    let (records, errors) = collect(reader);
    assert_eq!(errors, []);
    assert_eq!(records[0].area, area("E08000035", "E38000225", "E92000001"));

    let ambiguous = HEADER
        .replace("oslaua", "lad24cd")
        .replace("osward", "lad25cd");
    let error = OnspdReader::new(Cursor::new(ambiguous)).err().unwrap();
    assert_eq!(error.line, 1);
    assert!(error.problem.contains("oslaua"), "{error}");
}

#[test]
fn a_header_without_a_needed_column_is_refused_on_line_1() {
    for (missing, named) in [
        ("pcds", "pcds"),
        ("doterm", "doterm"),
        ("oslaua", "oslaua"),
        ("ctry", "ctry"),
        ("sicbl", "sicbl or ccg"),
    ] {
        let header = HEADER.replace(missing, "other");
        let error = OnspdReader::new(Cursor::new(format!("{header}\n")))
            .err()
            .unwrap_or_else(|| panic!("a header without {missing} was accepted"));
        assert_eq!(error.line, 1);
        assert_eq!(error.problem, format!("the header has no column {named}"));
    }
    let empty = OnspdReader::new(Cursor::new(String::new())).err().unwrap();
    assert_eq!(empty.line, 1);
    assert!(empty.problem.contains("empty"));
    let unclosed = OnspdReader::new(Cursor::new("\"pcds,doterm\n"))
        .err()
        .unwrap();
    assert!(unclosed.problem.starts_with("header:"), "{unclosed}");
}

#[test]
fn malformed_rows_are_refused_with_their_line_and_column_and_the_rest_is_read() {
    let good = row("LS17 7DF", "", "E08000035", "E92000001", "E38000225");
    let text = [
        HEADER.to_owned(),
        // 2: one field short.
        good.rsplit_once(',').unwrap().0.to_owned(),
        // 3: one field too many.
        format!("{good},\"extra\""),
        // 4: not a postcode.
        row("LS17 7D", "", "E08000035", "E92000001", "E38000225"),
        // 5: a country code of the wrong shape, 6: of the right shape but no country.
        row("LS17 7DF", "", "E08000035", "England", "E38000225"),
        row("LS17 7DF", "", "E08000035", "E92000002", "E38000225"),
        // 7: a local authority that is not an ONS code.
        row("LS17 7DF", "", "Leeds", "E92000001", "E38000225"),
        // 8: an empty sub-ICB location.
        row("LS17 7DF", "", "E08000035", "E92000001", ""),
        // 9: a termination date that is not YYYYMM.
        row("LS17 7DF", "2006-07", "E08000035", "E92000001", "E38000225"),
        // 10: month 13.
        row("LS17 7DF", "200613", "E08000035", "E92000001", "E38000225"),
        // 11: a quote left open.
        good.replace("-1.53", "\"-1.53"),
        // 12: good.
        row("WF14 0BQ", "", "E08000034", "E92000001", "E38000254"),
    ]
    .join("\n");
    let (records, errors) = read_onspd(&text);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].postcode.as_str(), "WF14 0BQ");

    let expected: [(usize, &str); 10] = [
        (2, "the row has 11 fields; the header has 12"),
        (3, "the row has 13 fields; the header has 12"),
        (4, "pcds: 'LS17 7D' is not a UK postcode"),
        (5, "ctry: 'England' is not the ONS code of a UK country"),
        (6, "ctry: 'E92000002' is not the ONS code of a UK country"),
        (7, "oslaua: 'Leeds' is not an ONS area code"),
        (8, "sicbl: '' is not an ONS area code"),
        (9, "doterm: '2006-07' is not a month YYYYMM"),
        (10, "doterm: '200613' is not a month YYYYMM"),
        (11, "field 12 opens a quote that the line does not close"),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, (line, start)) in errors.iter().zip(expected) {
        assert_eq!(error.line, line, "{error}");
        assert!(error.problem.starts_with(start), "line {line}: {error}");
    }
    assert_eq!(
        errors[3].to_string(),
        format!("line 5: {}", errors[3].problem)
    );
}

#[test]
fn a_long_bad_value_is_cut_short_in_the_error() {
    let long = "X".repeat(500);
    let text = format!(
        "{HEADER}\n{}\n",
        row("LS17 7DF", "", "E08000035", &long, "E38000225")
    );
    let (_, errors) = read_onspd(&text);
    assert!(errors[0].problem.len() < 120, "{}", errors[0].problem);
    assert!(errors[0].problem.contains("XXX..."));
}

// --- epraccur.csv ------------------------------------------------------------

fn practice_row(code: &str, status: &str, commissioner: &str) -> String {
    let mut fields = vec![String::new(); EPRACCUR_COLUMNS];
    fields[0] = code.into();
    fields[1] = "A SURGERY, THE".into();
    fields[12] = status.into();
    fields[14] = commissioner.into();
    fields
        .iter()
        .map(|field| format!("\"{field}\""))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn the_epraccur_sample_reads_without_error() {
    let (records, errors) = collect(EpraccurReader::new(reference_file("epraccur-sample.csv")));
    assert_eq!(errors, []);
    assert_eq!(records.len(), 5);
    let find = |code: &str| {
        records
            .iter()
            .find(|record| record.area.practice == code)
            .unwrap_or_else(|| panic!("{code} is not in the sample"))
    };
    let silverdale = find("A83627");
    assert_eq!(silverdale.name, "SILVERDALE FAMILY PRACTICE");
    assert_eq!(silverdale.area.icb_sub_location, "84H");
    assert_eq!(silverdale.status, PracticeStatus::Active);
    // The new and the previous GP of the NEMS change-of-GP example.
    assert_eq!(find("B86056").area.icb_sub_location, "15F");
    assert_eq!(find("B85612").area.icb_sub_location, "X2C4Y");
    let closed = find("B86999");
    assert_eq!(closed.status, PracticeStatus::Closed);
    assert_eq!(closed.name, r#"OLD MILL SURGERY, "CLOSED""#);
}

#[test]
fn malformed_practice_rows_are_refused_with_their_line_and_column() {
    let text = [
        practice_row("a83627", "A", "84h"),
        // 2: 26 columns.
        practice_row("B86056", "A", "15F")
            .rsplit_once(',')
            .unwrap()
            .0
            .to_owned(),
        // 3: a header row someone added.
        practice_row("Organisation Code", "Status Code", "Commissioner"),
        // 4: no commissioner.
        practice_row("B85612", "A", ""),
        // 5: an unknown status.
        practice_row("B85612", "X", "X2C4Y"),
        // 6: a code too short to be one.
        practice_row("B8", "A", "X2C4Y"),
        practice_row("W97999", "C", "7A4"),
    ]
    .join("\r\n");
    let (records, errors) = collect(EpraccurReader::new(Cursor::new(text)));
    let codes: Vec<_> = records.iter().map(|r| r.area.practice.as_str()).collect();
    assert_eq!(codes, ["A83627", "W97999"]);
    // Codes are given back in upper case.
    assert_eq!(records[0].area.icb_sub_location, "84H");

    let expected: [(usize, &str); 5] = [
        (2, "the row has 26 fields; epraccur.csv has 27"),
        (
            3,
            "column 1 (organisation code): 'Organisation Code' is not an ODS code",
        ),
        (4, "column 15 (commissioner): '' is not an ODS code"),
        (5, "column 13 (status code): 'X' is not A, C, D or P"),
        (6, "column 1 (organisation code): 'B8' is not an ODS code"),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, (line, problem)) in errors.iter().zip(expected) {
        assert_eq!((error.line, error.problem.as_str()), (line, problem));
    }
}

// --- The port ----------------------------------------------------------------

#[tokio::test]
async fn the_memory_adapter_answers_from_the_sample_files() {
    let (data, errors) = MemoryReferenceData::load(
        reference_file("onspd-sample.csv"),
        reference_file("epraccur-sample.csv"),
    )
    .unwrap();
    assert_eq!(errors, []);
    assert_eq!((data.postcode_count(), data.practice_count()), (12, 5));

    assert_eq!(
        data.postcode_area(&postcode("ls17 7df")).await.unwrap(),
        Some(area("E08000035", "E38000225", "E92000001"))
    );
    // A terminated postcode still locates an old address.
    assert!(
        data.postcode_area(&postcode("LS17 7DZ"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        data.postcode_area(&postcode("ZZ99 9ZZ")).await.unwrap(),
        None
    );

    assert_eq!(
        data.practice_area("B86056").await.unwrap(),
        Some("15F".to_owned())
    );
    assert_eq!(
        data.practice_area("a83627").await.unwrap(),
        Some("84H".to_owned())
    );
    assert_eq!(data.practice_area("Z99999").await.unwrap(), None);
}

#[tokio::test]
async fn the_memory_adapter_keeps_what_is_inserted() {
    let mut data = MemoryReferenceData::default();
    data.insert_postcode(
        postcode("DH1 2TF"),
        area("E06000047", "E38000234", "E92000001"),
    );
    data.insert_practice(PracticeArea {
        practice: "a83627".into(),
        icb_sub_location: "84H".into(),
    });
    assert_eq!(
        data.postcode_area(&postcode("dh12tf"))
            .await
            .unwrap()
            .unwrap()
            .local_authority,
        "E06000047"
    );
    assert_eq!(
        data.practice_area(" A83627 ").await.unwrap().as_deref(),
        Some("84H")
    );
}

#[test]
fn loading_reports_bad_rows_and_keeps_the_good_ones() {
    let onspd = format!(
        "{HEADER}\n{}\n{}\n",
        row("LS17 7DF", "", "E08000035", "E92000001", "E38000225"),
        row("LS17 7DF", "", "E08000035", "X", "E38000225"),
    );
    let epraccur = practice_row("B86056", "Q", "15F");
    let (data, errors) =
        MemoryReferenceData::load(Cursor::new(onspd), Cursor::new(epraccur)).unwrap();
    assert_eq!((data.postcode_count(), data.practice_count()), (1, 0));
    let lines: Vec<usize> = errors.iter().map(|error| error.line).collect();
    assert_eq!(lines, [3, 1]);
    assert!(MemoryReferenceData::load(Cursor::new("no,header"), Cursor::new("")).is_err());
}
