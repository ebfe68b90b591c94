//! Reports as aligned terminal tables.

use std::fmt::Write;

use super::aggregate::{Grouping, Report, Totals};

/// The report as a table, one row per group and a total row.
pub fn render(report: &Report) -> String {
    let first = match report.grouping {
        Grouping::Daily => "Date",
        Grouping::Monthly => "Month",
        Grouping::Session => "Session",
        Grouping::Project => "Project",
        Grouping::Model => "Model",
    };
    let header = [
        first,
        "Models",
        "Input",
        "Output",
        "Cache write",
        "Cache read",
        "Total tokens",
        "Cost (USD)",
    ];
    let mut rows: Vec<[String; 8]> = report
        .rows
        .iter()
        .map(|row| {
            let models = if matches!(report.grouping, Grouping::Model) {
                String::new()
            } else {
                row.models
                    .keys()
                    .map(|m| short_model(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            cells(row.key.clone(), models, &row.totals)
        })
        .collect();
    rows.push(cells("Total".into(), String::new(), &report.totals));
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // A model report's rows are models: its Models column would be empty.
    if matches!(report.grouping, Grouping::Model) {
        widths[1] = 0;
    }
    let mut out = String::new();
    push_row(&mut out, &header.map(String::from), &widths);
    let rule: Vec<String> = widths
        .iter()
        .filter(|w| **w > 0)
        .map(|w| "─".repeat(*w))
        .collect();
    let _ = writeln!(out, "{}", rule.join("──"));
    let last = rows.len() - 1;
    for (i, row) in rows.iter().enumerate() {
        if i == last {
            let _ = writeln!(out, "{}", rule.join("──"));
        }
        push_row(&mut out, row, &widths);
    }
    out
}

fn cells(key: String, models: String, totals: &Totals) -> [String; 8] {
    [
        key,
        models,
        thousands(totals.input),
        thousands(totals.output),
        thousands(totals.cache_creation),
        thousands(totals.cache_read),
        thousands(totals.total_tokens()),
        format!("${:.2}", totals.cost),
    ]
}

fn push_row(out: &mut String, row: &[String; 8], widths: &[usize; 8]) {
    let mut line = String::new();
    for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
        if *width == 0 {
            continue;
        }
        let pad = width - cell.chars().count();
        if i < 2 {
            line.push_str(cell);
            line.push_str(&" ".repeat(pad));
        } else {
            line.push_str(&" ".repeat(pad));
            line.push_str(cell);
        }
        if i + 1 < row.len() {
            line.push_str("  ");
        }
    }
    let _ = writeln!(out, "{}", line.trim_end());
}

/// `claude-sonnet-4-20250514` → `sonnet-4`.
fn short_model(model: &str) -> String {
    let name = model.strip_prefix("claude-").unwrap_or(model);
    match name.rsplit_once('-') {
        Some((base, date)) if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) => {
            base.to_owned()
        }
        _ => name.to_owned(),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_models_are_readable() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(short_model("claude-sonnet-4-20250514"), "sonnet-4");
        assert_eq!(short_model("claude-opus-4-6"), "opus-4-6");
    }
}
