//! Reference data: postcode normalisation, the CSV field splitter, the ONSPD,
//! epraccur.csv and sub-ICB lookup readers (the sample files, the header
//! variants, every kind of bad row with its line number), the translation of
//! sub-ICB locations to ODS codes, loading the three files together, and the
//! in-memory port.

use std::collections::BTreeMap;
use std::io::{BufReader, Cursor};
use std::path::PathBuf;

use hub::reference::{
    CsvRecord, EPRACCUR_COLUMNS, EpraccurReader, OnspdReader, Postcode, PostcodeArea,
    PostcodeRecord, PracticeArea, PracticeStatus, ReferenceAreas, ReferenceError, ReferenceFile,
    ReferenceItem, ReferenceRows, SubIcbLookup, SubIcbReader, YearMonth, collect, is_country_code,
    postcode_key, practice_key,
};

use hub::memory::MemoryReferenceData;

use hub::ports::ReferenceData;

fn reference_file(name: &str) -> BufReader<std::fs::File> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events/reference")
        .join(name);
    BufReader::new(std::fs::File::open(&path).unwrap_or_else(|_| panic!("{}", path.display())))
}

fn postcode(text: &str) -> Postcode {
    Postcode::parse(text).unwrap()
}

/// An area as the hub keeps it: the sub-ICB location an ODS code.
fn area(local_authority: &str, icb_sub_location: Option<&str>, country: &str) -> PostcodeArea {
    PostcodeArea {
        local_authority: local_authority.into(),
        icb_sub_location: icb_sub_location.map(str::to_owned),
        country: country.into(),
    }
}

/// A row's codes as the ONSPD gives them: local authority, sub-ICB location
/// (ONS), country.
fn codes(record: &PostcodeRecord) -> (&str, Option<&str>, &str) {
    (
        &record.local_authority,
        record.ons_icb_sub_location.as_deref(),
        &record.country,
    )
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
    assert_eq!(records.len(), 14);

    let find = |wanted: &str| {
        records
            .iter()
            .find(|record| record.postcode.as_str() == wanted)
            .unwrap_or_else(|| panic!("{wanted} is not in the sample"))
    };
    let leeds = find("LS17 7DF");
    assert_eq!(codes(leeds), ("E08000035", Some("E38000225"), "E92000001"));
    assert!(leeds.is_live());
    assert_eq!(find("DH1 2TF").local_authority, "E06000047");
    assert_eq!(find("DH6 2TH").local_authority, "E06000047");
    assert_eq!(find("WF14 0BQ").local_authority, "E08000034");
    assert_eq!(find("CF10 1EP").country, "W92000004");
    assert_eq!(find("EH1 1YZ").country, "S92000003");

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
            .all(|record| is_country_code(&record.country))
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
    assert_eq!(
        codes(&records[0]),
        ("E08000035", Some("E38000225"), "E92000001")
    );
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
    assert_eq!(records[0].local_authority, "E06000047");
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
    assert_eq!(
        codes(&records[0]),
        ("E08000035", Some("E38000225"), "E92000001")
    );

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
        // 8: a sub-ICB location that is no code at all.
        row("LS17 7DF", "", "E08000035", "E92000001", "E38 000225"),
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
        (8, "sicbl: 'E38 000225' is not an area code"),
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
fn any_short_sub_icb_code_is_kept_as_given_and_an_empty_one_is_none() {
    // Only England's E38 codes are translated; elsewhere the column holds
    // other bodies' codes, whatever their shape, and may be empty.
    let text = format!(
        "{HEADER}\n{}\n{}\n{}\n",
        row("BT1 5GS", "", "N09000003", "N92000002", "zc010"),
        row("GY1 1AA", "", "L99999999", "L93000001", ""),
        row("CF10 1EP", "", "W06000015", "W92000004", "W11000029"),
    );
    let (records, errors) = read_onspd(&text);
    assert_eq!(errors, []);
    let kept: Vec<_> = records
        .iter()
        .map(|record| record.ons_icb_sub_location.as_deref())
        .collect();
    assert_eq!(kept, [Some("ZC010"), None, Some("W11000029")]);
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

// --- The sub-ICB lookup -----------------------------------------------------

fn read_lookup(text: &str) -> (SubIcbLookup, Vec<ReferenceError>) {
    SubIcbLookup::read(Cursor::new(text.to_owned())).unwrap()
}

#[test]
fn the_sub_icb_sample_pairs_the_onspd_sample_s_codes_with_the_epraccur_sample_s() {
    let reader = SubIcbReader::new(reference_file("sub-icb-sample.csv")).unwrap();
    assert_eq!(
        (
            reader.columns().ons_code.1.as_str(),
            reader.columns().ods_code.1.as_str()
        ),
        ("sicbl22cd", "sicbl22cdh")
    );
    let (records, errors) = collect(reader);
    assert_eq!(errors, []);
    let leeds = records
        .iter()
        .find(|record| record.ons_code == "E38000225")
        .unwrap();
    assert_eq!(leeds.ods_code, "15F");
    assert_eq!(leeds.name, "NHS West Yorkshire ICB - 15F");

    let (lookup, errors) = SubIcbLookup::read(reference_file("sub-icb-sample.csv")).unwrap();
    assert_eq!(errors, []);
    // Every England code of the ONSPD sample, to a commissioner of the
    // epraccur sample.
    let (postcodes, _) = collect(OnspdReader::new(reference_file("onspd-sample.csv")).unwrap());
    let (practices, _) = collect(EpraccurReader::new(reference_file("epraccur-sample.csv")));
    for record in postcodes.iter().filter(|r| r.country == "E92000001") {
        let ons = record.ons_icb_sub_location.as_deref().unwrap();
        let ods = lookup.ods_code(ons).unwrap_or_else(|| panic!("{ons}"));
        assert!(
            practices.iter().any(|p| p.area.icb_sub_location == ods),
            "no sample practice in {ods}"
        );
    }
}

#[test]
fn lookup_columns_are_found_by_suffix_whatever_the_year_or_the_order() {
    for header in [
        "SICBL22CD,SICBL22CDH,SICBL22NM",
        "SICBL23NM,SICBL23CDH,SICBL23CD,ObjectId",
        "\u{feff}\"CCG21CD\",\"CCG21CDH\",\"CCG21NM\"",
        "LOC22CD,LOC22CDH,LOC22NM",
    ] {
        let width = header.split(',').count();
        let mut fields = vec!["1".to_owned(); width];
        let names: Vec<String> = header
            .trim_start_matches('\u{feff}')
            .split(',')
            .map(|name| name.trim_matches('"').to_ascii_lowercase())
            .collect();
        for (index, name) in names.iter().enumerate() {
            fields[index] = match name {
                n if n.ends_with("cdh") => "15f".into(),
                n if n.ends_with("cd") => "E38000225".into(),
                n if n.ends_with("nm") => "\"NHS Leeds, ICB\"".into(),
                _ => "7".into(),
            };
        }
        let text = format!("{header}\r\n{}\r\n", fields.join(","));
        let (records, errors) = collect(SubIcbReader::new(Cursor::new(text)).unwrap());
        assert_eq!(errors, [], "{header}");
        assert_eq!(records[0].ons_code, "E38000225", "{header}");
        assert_eq!(records[0].ods_code, "15F", "{header}");
        assert_eq!(records[0].name, "NHS Leeds, ICB", "{header}");
    }
    // No name column: the name is empty.
    let (records, _) =
        collect(SubIcbReader::new(Cursor::new("SICBL22CD,SICBL22CDH\nE38000225,15F\n")).unwrap());
    assert_eq!(records[0].name, "");
}

#[test]
fn a_lookup_to_icbs_and_regions_is_read_for_its_sub_icb_columns() {
    let text = "SICBL22CD,SICBL22CDH,SICBL22NM,ICB22CD,ICB22CDH,ICB22NM,NHSER22CD,NHSER22CDH,NHSER22NM\n\
                E38000225,15F,Leeds,E54000054,QWO,West Yorkshire,E40000012,Y63,North East and Yorkshire\n";
    let reader = SubIcbReader::new(Cursor::new(text)).unwrap();
    assert_eq!(reader.columns().ons_code.1, "sicbl22cd");
    let (records, errors) = collect(reader);
    assert_eq!(errors, []);
    assert_eq!(records[0].ods_code, "15F");

    // Two pairs, neither of sub-ICB locations: refused rather than guessed.
    let error = SubIcbReader::new(Cursor::new("ICB22CD,ICB22CDH,NHSER22CD,NHSER22CDH\n"))
        .err()
        .unwrap();
    assert_eq!(error.line, 1);
    assert!(error.problem.contains("several"), "{error}");
}

#[test]
fn a_lookup_header_without_a_code_pair_is_refused_on_line_1() {
    for header in [
        "SICBL22CD,SICBL22NM",
        "SICBL22CDH,SICBL22NM",
        "SICBL22CD,ICB22CDH",
        "pcds,doterm,oslaua,ctry,sicbl",
    ] {
        let error = SubIcbReader::new(Cursor::new(format!("{header}\n")))
            .err()
            .unwrap_or_else(|| panic!("{header} was accepted"));
        assert_eq!(error.line, 1, "{header}");
        assert!(error.problem.contains("CDH"), "{header}: {error}");
    }
    let empty = SubIcbReader::new(Cursor::new("")).err().unwrap();
    assert!(empty.problem.contains("empty"), "{empty}");
}

#[test]
fn malformed_lookup_rows_are_refused_with_their_line_and_column() {
    let text = [
        "SICBL22CD,SICBL22CDH,SICBL22NM",
        // 2: good.
        "E38000225,15F,Leeds",
        // 3: an ICB's code, not a sub-ICB location's.
        "E54000054,QWO,West Yorkshire",
        // 4: no ODS code.
        "E38000254,,Kirklees",
        // 5: a short row.
        "E38000234,84H",
        // 6: the same pair again: harmless.
        "E38000225,15F,Leeds",
        // 7: the same ONS code with another ODS code: the first is kept.
        "E38000225,03Q,Leeds again",
        // 8: good, lower case.
        "e38000254,x2c4y,Kirklees",
    ]
    .join("\n");
    let (lookup, errors) = read_lookup(&text);
    assert_eq!(lookup.len(), 1, "{lookup:?}");
    assert_eq!(lookup.ods_code("E38000225"), Some("15F"));
    let expected: [(usize, &str); 5] = [
        (
            3,
            "sicbl22cd: 'E54000054' is not the ONS code of a sub-ICB location",
        ),
        (4, "sicbl22cdh: '' is not an ODS code"),
        (5, "the row has 2 fields; the header has 3"),
        (
            7,
            "E38000225 is paired with 03Q here and with 15F on an earlier line",
        ),
        (8, "sicbl22cd: 'e38000254' is not the ONS code"),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, (line, start)) in errors.iter().zip(expected) {
        assert_eq!(error.line, line, "{error}");
        assert!(error.problem.starts_with(start), "line {line}: {error}");
    }
}

#[test]
fn a_postcode_s_area_carries_the_ods_code_of_its_sub_icb_location() {
    let (lookup, _) = read_lookup("SICBL22CD,SICBL22CDH\nE38000225,15F\n");
    let text = format!(
        "{HEADER}\n{}\n{}\n{}\n",
        row("LS17 7DF", "", "E08000035", "E92000001", "E38000225"),
        // An England code the lookup lacks, and Wales's own code.
        row("WF14 0BQ", "", "E08000034", "E92000001", "E38000254"),
        row("CF10 1EP", "", "W06000015", "W92000004", "W11000029"),
    );
    let (records, _) = read_onspd(&text);
    let areas: Vec<PostcodeArea> = records.iter().map(|r| r.area(&lookup)).collect();
    assert_eq!(
        areas,
        [
            area("E08000035", Some("15F"), "E92000001"),
            area("E08000034", None, "E92000001"),
            area("W06000015", None, "W92000004"),
        ]
    );
}

// --- Loading the three files together ---------------------------------------

fn sample_rows() -> ReferenceRows<BufReader<std::fs::File>, BufReader<std::fs::File>> {
    ReferenceRows::open(
        reference_file("sub-icb-sample.csv"),
        reference_file("onspd-sample.csv"),
        reference_file("epraccur-sample.csv"),
    )
    .unwrap()
}

#[test]
fn the_samples_load_as_items_keyed_for_the_store_and_counted() {
    let mut rows = sample_rows();
    let items: Vec<ReferenceItem> = rows.by_ref().map(Result::unwrap).collect();
    let counts = rows.counts().clone();
    assert_eq!(
        (
            counts.sub_icb_locations,
            counts.postcodes,
            counts.terminated,
            counts.practices
        ),
        (4, 14, 1, 5)
    );
    // Wales, Scotland, Northern Ireland, the Isle of Man, the Channel
    // Islands: no sub-ICB location, and none of them an unknown England code.
    assert_eq!(counts.without_sub_icb, 5);
    assert!(counts.unknown_sub_icb_codes.is_empty());
    // The Welsh practice's commissioner is not an English sub-ICB location.
    assert_eq!(counts.practices_outside_lookup, 1);
    assert_eq!(counts.rejected_total(), 0);
    assert_eq!(counts.items(), items.len());

    let keys: Vec<String> = items.iter().map(ReferenceItem::key).collect();
    assert_eq!(keys[0], "POSTCODE#DH1 2TF");
    assert!(keys.contains(&"POSTCODE#LS17 7DF".to_owned()));
    assert_eq!(keys.last().unwrap(), "PRACTICE#W97999");
    assert_eq!(
        items.iter().find(|item| item.key() == "POSTCODE#LS17 7DZ"),
        Some(&ReferenceItem::Postcode {
            postcode: postcode("LS17 7DZ"),
            area: area("E08000035", Some("15F"), "E92000001"),
            terminated: true,
        })
    );
    assert_eq!(practice_key(" b86056 "), "PRACTICE#B86056");
    assert_eq!(postcode_key(&postcode("ls177df")), "POSTCODE#LS17 7DF");
}

#[tokio::test]
async fn areas_a_and_b_of_the_samples_differ_in_every_code() {
    // events/reference/README.md: area A is Leeds, area B Kirklees.
    let data = sample_data();
    let a = area("E08000035", Some("15F"), "E92000001");
    let b = area("E08000034", Some("X2C4Y"), "E92000001");
    for (code, expected) in [
        ("LS17 7DF", &a),
        ("LS17 8AA", &a),
        ("LS17 7DZ", &a),
        ("WF14 0BQ", &b),
        ("WF15 6QH", &b),
        ("WF16 9AA", &b),
        // Area C, of the NEMS clinical examples: County Durham.
        ("DH1 2TF", &area("E06000047", Some("84H"), "E92000001")),
    ] {
        let located = data.postcode_area(&postcode(code)).await.unwrap();
        assert_eq!(located.as_ref(), Some(expected), "{code}");
    }
    for (practice, icb) in [("B86056", "15F"), ("B85612", "X2C4Y"), ("A83627", "84H")] {
        let located = data.practice_area(practice).await.unwrap();
        assert_eq!(located.as_deref(), Some(icb), "{practice}");
    }
}

#[test]
fn a_load_counts_unknown_england_codes_and_rejects_bad_rows_by_file() {
    let lookup = "SICBL22CD,SICBL22CDH\nE38000225,15F\nE99,BAD\n";
    let onspd = format!(
        "{HEADER}\n{}\n{}\n{}\n{}\n",
        row("LS17 7DF", "", "E08000035", "E92000001", "E38000225"),
        row("WF14 0BQ", "", "E08000034", "E92000001", "E38000254"),
        row("WF15 6QH", "200101", "E08000034", "E92000001", "E38000254"),
        row("LS17 7DF", "", "E08000035", "X", "E38000225"),
    );
    let epraccur = [
        practice_row("B86056", "A", "15F"),
        practice_row("B85612", "A", "X2C4Y"),
        practice_row("B8", "A", "15F"),
    ]
    .join("\n");
    let mut rows = ReferenceRows::open(
        Cursor::new(lookup),
        Cursor::new(onspd),
        Cursor::new(epraccur),
    )
    .unwrap();
    let rejected: Vec<String> = rows
        .by_ref()
        .filter_map(Result::err)
        .map(|rejected| rejected.to_string())
        .collect();
    assert_eq!(
        rejected,
        [
            "sub-ICB lookup line 3: sicbl22cd: 'E99' is not the ONS code of a sub-ICB location (E38 and 6 digits)",
            "ONSPD line 5: ctry: 'X' is not the ONS code of a UK country",
            "epraccur line 3: column 1 (organisation code): 'B8' is not an ODS code",
        ]
    );
    let counts = rows.counts();
    assert_eq!((counts.postcodes, counts.terminated), (3, 1));
    assert_eq!(counts.without_sub_icb, 2);
    assert_eq!(
        counts.unknown_sub_icb_codes,
        BTreeMap::from([("E38000254".to_owned(), 2)])
    );
    assert_eq!((counts.practices, counts.practices_outside_lookup), (2, 1));
    assert_eq!(
        counts.rejected,
        BTreeMap::from([
            (ReferenceFile::SubIcbLookup, 1),
            (ReferenceFile::Onspd, 1),
            (ReferenceFile::Epraccur, 1),
        ])
    );
}

#[test]
fn a_load_without_a_usable_lookup_or_onspd_header_does_not_start() {
    let onspd = || Cursor::new(format!("{HEADER}\n"));
    let refused = |lookup: &str| {
        ReferenceRows::open(Cursor::new(lookup.to_owned()), onspd(), Cursor::new(""))
            .err()
            .unwrap()
    };
    let none = refused("SICBL22CD,SICBL22CDH\nE54000054,QWO\n");
    assert_eq!(none.file, ReferenceFile::SubIcbLookup);
    assert!(none.error.problem.contains("no usable row"), "{none}");
    assert_eq!(refused("").file, ReferenceFile::SubIcbLookup);
    let bad_onspd = ReferenceRows::open(
        Cursor::new("SICBL22CD,SICBL22CDH\nE38000225,15F\n"),
        Cursor::new("no,header"),
        Cursor::new(""),
    )
    .err()
    .unwrap();
    assert_eq!(bad_onspd.file, ReferenceFile::Onspd);
    assert_eq!(bad_onspd.error.line, 1);
}

// --- The port ----------------------------------------------------------------

fn sample_data() -> MemoryReferenceData {
    let (data, rejected) = MemoryReferenceData::load(
        reference_file("sub-icb-sample.csv"),
        reference_file("onspd-sample.csv"),
        reference_file("epraccur-sample.csv"),
    )
    .unwrap();
    assert_eq!(rejected, []);
    data
}

#[tokio::test]
async fn the_memory_adapter_answers_from_the_sample_files() {
    let data = sample_data();
    assert_eq!((data.postcode_count(), data.practice_count()), (14, 5));

    assert_eq!(
        data.postcode_area(&postcode("ls17 7df")).await.unwrap(),
        Some(area("E08000035", Some("15F"), "E92000001"))
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
        data.postcode_area(&postcode("CF10 1EP")).await.unwrap(),
        Some(area("W06000015", None, "W92000004"))
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
async fn several_places_are_located_at_once_and_only_the_known_ones_answered() {
    let data = sample_data();
    let (leeds, kirklees, nowhere) = (
        postcode("LS17 7DF"),
        postcode("WF14 0BQ"),
        postcode("ZZ99 9ZZ"),
    );
    let areas = data
        .locate_many(
            &[&leeds, &kirklees, &nowhere],
            &["b86056", "B85612", "Z99999"],
        )
        .await
        .unwrap();
    assert_eq!(areas.postcodes.len(), 2);
    assert_eq!(
        areas.postcode(&kirklees),
        Some(&area("E08000034", Some("X2C4Y"), "E92000001"))
    );
    assert_eq!(areas.postcode(&nowhere), None);
    assert_eq!(areas.practices.len(), 2);
    assert_eq!(areas.practice(" B86056"), Some("15F"));
    assert_eq!(areas.practice("b85612"), Some("X2C4Y"));
    assert_eq!(areas.practice("Z99999"), None);
    assert_eq!(
        data.locate_many(&[], &[]).await.unwrap(),
        ReferenceAreas::default()
    );
}

#[tokio::test]
async fn the_memory_adapter_keeps_what_is_inserted() {
    let mut data = MemoryReferenceData::default();
    data.insert_postcode(
        postcode("DH1 2TF"),
        area("E06000047", Some("84H"), "E92000001"),
    );
    data.insert(ReferenceItem::Practice(PracticeArea {
        practice: "a83627".into(),
        icb_sub_location: "84H".into(),
    }));
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
    let lookup = || Cursor::new("SICBL22CD,SICBL22CDH\nE38000225,15F\n");
    let onspd = format!(
        "{HEADER}\n{}\n{}\n",
        row("LS17 7DF", "", "E08000035", "E92000001", "E38000225"),
        row("LS17 7DF", "", "E08000035", "X", "E38000225"),
    );
    let epraccur = practice_row("B86056", "Q", "15F");
    let (data, rejected) =
        MemoryReferenceData::load(lookup(), Cursor::new(onspd), Cursor::new(epraccur)).unwrap();
    assert_eq!((data.postcode_count(), data.practice_count()), (1, 0));
    let places: Vec<(ReferenceFile, usize)> = rejected
        .iter()
        .map(|rejected| (rejected.file, rejected.error.line))
        .collect();
    assert_eq!(
        places,
        [(ReferenceFile::Onspd, 3), (ReferenceFile::Epraccur, 1)]
    );
    assert!(
        MemoryReferenceData::load(lookup(), Cursor::new("no,header"), Cursor::new("")).is_err()
    );
}
