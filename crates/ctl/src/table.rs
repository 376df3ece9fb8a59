//! patronictl's table: a boxed grid with the cluster's name and system identifier in the top
//! border, and the same rows as TSV, JSON (a list of objects keyed by column) or YAML.

use serde_json::{Map, Value};

/// Rows of text cells under named columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[&str]) -> Table {
        Table {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(index, column)| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(index))
                    .map(|cell| cell.chars().count())
                    .chain([column.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Columns whose every non-empty cell is a number: right-aligned, as patronictl does.
    fn numeric(&self) -> Vec<bool> {
        (0..self.columns.len())
            .map(|index| {
                let mut cells = self
                    .rows
                    .iter()
                    .filter_map(|row| row.get(index))
                    .filter(|cell| !cell.is_empty())
                    .peekable();
                cells.peek().is_some() && cells.all(|cell| cell.parse::<f64>().is_ok())
            })
            .collect()
    }

    /// The boxed grid; `title` (e.g. `Cluster: demo (7301…)`) sits in the top border and
    /// lengthens it when wider than the table.
    pub fn render(&self, title: &str) -> String {
        let widths = self.widths();
        let numeric = self.numeric();
        let rule: String = widths
            .iter()
            .map(|width| format!("+{}", "-".repeat(width + 2)))
            .collect::<String>()
            + "+";
        let top = if title.is_empty() {
            rule.clone()
        } else {
            let label = format!("+ {title} ");
            if label.chars().count() < rule.chars().count() {
                let rest: String = rule.chars().skip(label.chars().count()).collect();
                format!("{label}{rest}")
            } else {
                format!("{label}-+")
            }
        };
        let line = |cells: &[String], align: bool| -> String {
            let mut out = String::new();
            for (index, width) in widths.iter().enumerate() {
                let cell = cells.get(index).map(String::as_str).unwrap_or("");
                let pad = " ".repeat(width - cell.chars().count());
                if align && numeric[index] {
                    out.push_str(&format!("| {pad}{cell} "));
                } else {
                    out.push_str(&format!("| {cell}{pad} "));
                }
            }
            out.push('|');
            out
        };
        let mut out = vec![top, line(&self.columns, false), rule.clone()];
        out.extend(self.rows.iter().map(|row| line(row, true)));
        out.push(rule);
        out.join("\n") + "\n"
    }

    /// Tab-separated values with a header line.
    pub fn tsv(&self) -> String {
        let mut out = self.columns.join("\t") + "\n";
        for row in &self.rows {
            out.push_str(&row.join("\t"));
            out.push('\n');
        }
        out
    }

    /// Each row as an object keyed by column; numeric cells as numbers, empty cells left out.
    pub fn objects(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|row| {
                let mut object = Map::new();
                for (column, cell) in self.columns.iter().zip(row) {
                    if cell.is_empty() {
                        continue;
                    }
                    let value = cell
                        .parse::<i64>()
                        .map(Value::from)
                        .or_else(|_| cell.parse::<f64>().map(Value::from))
                        .unwrap_or_else(|_| Value::String(cell.clone()));
                    object.insert(column.clone(), value);
                }
                Value::Object(object)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut table = Table::new(&["Member", "Role", "TL"]);
        table.push(vec!["n1".into(), "Leader".into(), "1".into()]);
        table.push(vec!["node-two".into(), "Replica".into(), "".into()]);
        table
    }

    #[test]
    fn grid_aligns_columns_and_titles_the_top_border() {
        let text = sample().render("Cluster: demo (1)");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "+ Cluster: demo (1) -+----+");
        assert_eq!(lines[1], "| Member   | Role    | TL |");
        assert_eq!(lines[3], "| n1       | Leader  |  1 |");
        assert!(
            lines
                .iter()
                .all(|line| line.chars().count() == lines[1].chars().count())
        );
    }

    #[test]
    fn objects_type_numbers_and_skip_empty_cells() {
        let objects = sample().objects();
        assert_eq!(objects[0]["TL"], 1);
        assert!(objects[1].get("TL").is_none());
        assert_eq!(objects[1]["Member"], "node-two");
    }
}
