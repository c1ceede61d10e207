//! How `hub-cli` shows what it reads: tables for people, JSON for programs.

use std::io::{self, IsTerminal, Write};

use hub_cli::subscriber::{Delivery, Lifecycle};

/// Plain ANSI styles, used only when stdout is a terminal and NO_COLOR is
/// not set (https://no-color.org).
#[derive(Debug, Clone, Copy)]
pub struct Colours(bool);

const BOLD: &str = "1";
const DIM: &str = "2";
const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const MAGENTA: &str = "35";

impl Colours {
    /// On for a terminal, unless NO_COLOR is set to anything but "".
    pub fn for_stdout() -> Self {
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Self(io::stdout().is_terminal() && !no_colour)
    }

    /// Plain text, whatever stdout is.
    #[cfg(test)]
    pub fn never() -> Self {
        Self(false)
    }

    pub fn bold(self, text: &str) -> String {
        self.paint(BOLD, text)
    }

    pub fn red(self, text: &str) -> String {
        self.paint(RED, text)
    }

    pub fn green(self, text: &str) -> String {
        self.paint(GREEN, text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.paint(YELLOW, text)
    }

    fn paint(self, style: &str, text: &str) -> String {
        if self.0 && !text.is_empty() {
            format!("\x1b[{style}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// Where deliveries go: a table or JSON lines, on any writer (stdout).
pub struct Output<W: Write> {
    out: W,
    format: Format,
}

enum Format {
    Json,
    Table {
        colours: Colours,
        /// The columns' widths so far; None until the header is printed.
        widths: Option<[usize; COLUMNS]>,
    },
}

const COLUMNS: usize = 5;
const HEADER: [&str; COLUMNS] = [
    "EVENT TYPE",
    "LIFECYCLE",
    "NHS NUMBER",
    "EVENT ID",
    "SUBSCRIPTIONS",
];
/// Widths the usual values fit: the longest event type code, a lifecycle
/// with its out-of-order flag ("update older-than-current"), an NHS number,
/// a UUID. Longer cells (a replay's) widen their column from then on.
const MINIMUM_WIDTHS: [usize; COLUMNS] = [25, 25, 10, 36, 0];

impl<W: Write> Output<W> {
    pub fn json(out: W) -> Self {
        Self {
            out,
            format: Format::Json,
        }
    }

    pub fn table(out: W, colours: Colours) -> Self {
        Self {
            out,
            format: Format::Table {
                colours,
                widths: None,
            },
        }
    }

    /// Writes one delivery (a table row, after the header the first time,
    /// or a JSON line) and flushes it.
    pub fn show(&mut self, delivery: &Delivery) -> io::Result<()> {
        match &mut self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, delivery)?;
                writeln!(self.out)?;
            }
            Format::Table { colours, widths } => {
                let colours = *colours;
                let cells = cells(delivery);
                if widths.is_none() {
                    let mut initial = MINIMUM_WIDTHS;
                    for (width, title) in initial.iter_mut().zip(HEADER) {
                        *width = (*width).max(title.len());
                    }
                    let header: Vec<String> = HEADER
                        .iter()
                        .zip(initial)
                        .map(|(title, width)| format!("{title:<width$}"))
                        .collect();
                    let line = header.join("  ");
                    writeln!(self.out, "{}", colours.paint(BOLD, line.trim_end()))?;
                    *widths = Some(initial);
                }
                let widths = widths.get_or_insert(MINIMUM_WIDTHS);
                let mut line = String::new();
                for (column, (cell, width)) in cells.iter().zip(widths.iter_mut()).enumerate() {
                    *width = (*width).max(cell.text.chars().count());
                    let padding = if column + 1 == COLUMNS {
                        0
                    } else {
                        *width - cell.text.chars().count() + 2
                    };
                    line.push_str(&colours.paint(cell.style, &cell.text));
                    line.push_str(&" ".repeat(padding));
                }
                writeln!(self.out, "{}", line.trim_end())?;
            }
        }
        self.out.flush()
    }
}

/// A table of rows known in advance: columns as wide as their widest
/// cell, two spaces apart, the header in bold.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, colours: Colours) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|title| title.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut text = String::new();
            for (cell, width) in cells.iter().zip(&widths) {
                text.push_str(cell);
                text.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
            text.trim_end().to_owned()
        };
        let mut text = colours.bold(&line(self.header.clone()));
        text.push('\n');
        for row in &self.rows {
            text.push_str(&line(row.iter().map(String::as_str).collect()));
            text.push('\n');
        }
        text
    }
}

struct Cell {
    text: String,
    style: &'static str,
}

fn cells(delivery: &Delivery) -> [Cell; COLUMNS] {
    let mut lifecycle = delivery.lifecycle.code().to_owned();
    let mut lifecycle_style = match delivery.lifecycle {
        Lifecycle::New => GREEN,
        Lifecycle::Update => YELLOW,
        Lifecycle::Delete => RED,
    };
    if let Some(flag) = delivery.out_of_order {
        lifecycle.push_str(&format!(" {flag}"));
        lifecycle_style = RED;
    }
    if let Some(replay) = &delivery.replay {
        lifecycle.push_str(&format!(" replay={replay}"));
        if delivery.out_of_order.is_none() {
            lifecycle_style = MAGENTA;
        }
    }
    let subscriptions = delivery
        .subscriptions
        .iter()
        .map(|matched| match &matched.tag {
            Some(tag) => format!("{} ({tag})", matched.id),
            None => matched.id.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    [
        Cell {
            text: delivery.event_type.clone(),
            style: BOLD,
        },
        Cell {
            text: lifecycle,
            style: lifecycle_style,
        },
        Cell {
            text: delivery
                .nhs_number
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            style: "",
        },
        Cell {
            text: delivery.event_id.clone(),
            style: DIM,
        },
        Cell {
            text: subscriptions,
            style: "",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_cli::subscriber::{ContentType, NhsNumber, OutOfOrder, SubscriptionMatch};

    fn delivery() -> Delivery {
        Delivery {
            message_id: Some("m-1".into()),
            event_id: "85c8a1c5-a8a1-41c9-bb99-20956fa66218".into(),
            event_type: "vaccinations-1".into(),
            lifecycle: Lifecycle::New,
            content_type: ContentType::FhirXml,
            subscriptions: vec![
                SubscriptionMatch {
                    id: "s-1".into(),
                    tag: Some("gp-care".into()),
                },
                SubscriptionMatch {
                    id: "s-2".into(),
                    tag: None,
                },
            ],
            nhs_number: NhsNumber::parse("9912003888").ok(),
            out_of_order: None,
            replay: None,
            subscriber: None,
            receive_count: Some(1),
            body: "<Bundle/>".into(),
        }
    }

    fn shown(mut output: Output<Vec<u8>>, deliveries: &[Delivery]) -> String {
        for delivery in deliveries {
            output.show(delivery).unwrap();
        }
        String::from_utf8(output.out).unwrap()
    }

    #[test]
    fn the_table_has_a_header_and_a_row_per_delivery_without_colours() {
        let mut flagged = delivery();
        flagged.lifecycle = Lifecycle::Update;
        flagged.out_of_order = Some(OutOfOrder::OlderThanCurrent);
        flagged.replay = Some("r-9".into());
        flagged.nhs_number = None;
        let text = shown(
            Output::table(Vec::new(), Colours(false)),
            &[delivery(), flagged],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("EVENT TYPE "), "{text}");
        assert!(lines[0].ends_with("SUBSCRIPTIONS"), "{text}");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "vaccinations-1",
                "new",
                "9912003888",
                "85c8a1c5-a8a1-41c9-bb99-20956fa66218",
                "s-1",
                "(gp-care),",
                "s-2"
            ]
        );
        assert!(
            lines[2].contains("update older-than-current replay=r-9"),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
        // The first row's columns line up with the header's.
        assert_eq!(lines[0].find("NHS NUMBER"), lines[1].find("9912003888"));
        assert_eq!(lines[0].find("EVENT ID"), lines[1].find("85c8a1c5"));
    }

    #[test]
    fn a_table_lines_its_columns_up() {
        let mut table = Table::new(&["ID", "CRITERIA"]);
        table.row(vec!["a-long-id".into(), "x".into()]);
        table.row(vec!["b".into(), "y z".into()]);
        assert_eq!(
            table.render(Colours(false)),
            "ID         CRITERIA\na-long-id  x\nb          y z\n"
        );
    }

    #[test]
    fn colours_are_plain_ansi_codes() {
        let text = shown(Output::table(Vec::new(), Colours(true)), &[delivery()]);
        assert!(text.contains("\x1b[32mnew\x1b[0m"), "{text:?}");
    }

    #[test]
    fn json_lines_are_one_object_per_delivery() {
        let text = shown(Output::json(Vec::new()), &[delivery(), delivery()]);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["eventType"], "vaccinations-1");
        assert_eq!(lines[0]["subscriptions"][0]["tag"], "gp-care");
        assert_eq!(lines[0]["body"], "<Bundle/>");
    }
}
