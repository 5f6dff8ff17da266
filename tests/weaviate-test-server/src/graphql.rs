//! A GraphQL document parser: operations, selections with aliases and arguments, literal values
//! (enums kept apart from strings, ints from floats, as graphql-go types them) and `$variables`.
//! What the queries mean is `query.rs`'s job.
//!
//! Answers follow graphql-go as Weaviate uses it: always HTTP 200, either `{"data": ...}` or
//! `{"errors": [{"locations": [...], "message": ..., "path": [...]}]}`.

use std::fmt;

use serde_json::{Map, Value, json};

/// A GraphQL input value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// An enum literal (`operator: Equal`).
    Enum(String),
    List(Vec<GValue>),
    Object(Vec<(String, GValue)>),
    /// A string from `variables`: JSON has no enums, so it may stand for either.
    VarStr(String),
}

impl GValue {
    fn from_json(v: &Value) -> GValue {
        match v {
            Value::Null => GValue::Null,
            Value::Bool(b) => GValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => GValue::Int(i),
                None => GValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => GValue::VarStr(s.clone()),
            Value::Array(items) => GValue::List(items.iter().map(GValue::from_json).collect()),
            Value::Object(map) => GValue::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), GValue::from_json(v)))
                    .collect(),
            ),
        }
    }
}

impl fmt::Display for GValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GValue::Null => write!(f, "null"),
            GValue::Bool(b) => write!(f, "{b}"),
            GValue::Int(i) => write!(f, "{i}"),
            GValue::Float(x) => write!(f, "{x}"),
            GValue::Str(s) | GValue::VarStr(s) => write!(f, "{}", Value::String(s.clone())),
            GValue::Enum(e) => write!(f, "{e}"),
            GValue::List(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
            GValue::Object(fields) => {
                write!(f, "{{")?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

/// A parsed selection: `alias: name(args) { children }`.
#[derive(Debug)]
pub(crate) struct Field {
    pub name: String,
    pub alias: Option<String>,
    pub args: Vec<(String, GValue)>,
    pub children: Vec<Field>,
    pub line: usize,
    pub column: usize,
}

impl Field {
    #[cfg(test)]
    pub(crate) fn arg(&self, name: &str) -> Option<&GValue> {
        self.args.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub(crate) fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// A GraphQL error in graphql-go's shape.
pub(crate) fn error(message: &str, line: usize, column: usize, path: &[&str]) -> Value {
    json!({
        "errors": [{
            "locations": [{"column": column, "line": line}],
            "message": message,
            "path": path,
        }]
    })
}

/// Parse a query document into its top-level selections, substituting `$variables`.
pub(crate) fn parse(query: &str, variables: &Map<String, Value>) -> Result<Vec<Field>, Value> {
    let mut p = Parser {
        chars: query.chars().collect(),
        pos: 0,
        variables,
    };
    p.skip_ignored();
    if p.peek_word() == Some("query".into()) || p.peek_word() == Some("mutation".into()) {
        let word = p.name()?;
        if word == "mutation" {
            return Err(p.error("Schema is not configured for mutations."));
        }
        p.skip_ignored();
        if p.peek().is_some_and(|c| c.is_alphabetic() || c == '_') {
            p.name()?;
        }
        p.skip_ignored();
        if p.peek() == Some('(') {
            // Variable definitions: skipped, values come from `variables`.
            let mut depth = 0;
            while let Some(c) = p.next() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    p.skip_ignored();
    let fields = p.selection_set()?;
    p.skip_ignored();
    if p.pos < p.chars.len() {
        return Err(p.error("Unexpected characters after the query"));
    }
    Ok(fields)
}

struct Parser<'v> {
    chars: Vec<char>,
    pos: usize,
    variables: &'v Map<String, Value>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += 1;
        c
    }

    fn location(&self) -> (usize, usize) {
        let before = &self.chars[..self.pos.min(self.chars.len())];
        let line = before.iter().filter(|&&c| c == '\n').count() + 1;
        let column = before.iter().rev().take_while(|&&c| c != '\n').count() + 1;
        (line, column)
    }

    fn error(&self, what: &str) -> Value {
        let (line, column) = self.location();
        let found = self
            .peek()
            .map_or_else(|| "<EOF>".to_owned(), |c| format!("\"{c}\""));
        error(
            &format!("Syntax Error GraphQL request ({line}:{column}) {what}, found {found}"),
            line,
            column,
            &[],
        )
    }

    fn skip_ignored(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ',' {
                self.pos += 1;
            } else if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn expect(&mut self, want: char) -> Result<(), Value> {
        self.skip_ignored();
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("Expected \"{want}\"")))
        }
    }

    fn peek_word(&self) -> Option<String> {
        let word: String = self.chars[self.pos..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        (!word.is_empty()).then_some(word)
    }

    fn name(&mut self) -> Result<String, Value> {
        self.skip_ignored();
        if !self.peek().is_some_and(|c| c.is_alphabetic() || c == '_') {
            return Err(self.error("Expected Name"));
        }
        let word = self.peek_word().unwrap_or_default();
        self.pos += word.chars().count();
        Ok(word)
    }

    fn selection_set(&mut self) -> Result<Vec<Field>, Value> {
        self.expect('{')?;
        let mut fields = Vec::new();
        loop {
            self.skip_ignored();
            match self.peek() {
                Some('}') => {
                    self.pos += 1;
                    break;
                }
                None => return Err(self.error("Expected Name")),
                _ => fields.push(self.field()?),
            }
        }
        if fields.is_empty() {
            return Err(self.error("Expected Name"));
        }
        Ok(fields)
    }

    fn field(&mut self) -> Result<Field, Value> {
        self.skip_ignored();
        let (line, column) = self.location();
        let mut name = self.name()?;
        let mut alias = None;
        self.skip_ignored();
        if self.peek() == Some(':') {
            self.pos += 1;
            alias = Some(name);
            name = self.name()?;
        }
        self.skip_ignored();
        let mut args = Vec::new();
        if self.peek() == Some('(') {
            self.pos += 1;
            loop {
                self.skip_ignored();
                if self.peek() == Some(')') {
                    self.pos += 1;
                    break;
                }
                let arg = self.name()?;
                self.expect(':')?;
                let value = self.value()?;
                args.push((arg, value));
            }
        }
        self.skip_ignored();
        let children = if self.peek() == Some('{') {
            self.selection_set()?
        } else {
            Vec::new()
        };
        Ok(Field {
            name,
            alias,
            args,
            children,
            line,
            column,
        })
    }

    fn value(&mut self) -> Result<GValue, Value> {
        self.skip_ignored();
        match self.peek() {
            Some('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ignored();
                    if self.peek() == Some(']') {
                        self.pos += 1;
                        return Ok(GValue::List(items));
                    }
                    items.push(self.value()?);
                }
            }
            Some('{') => {
                self.pos += 1;
                let mut fields = Vec::new();
                loop {
                    self.skip_ignored();
                    if self.peek() == Some('}') {
                        self.pos += 1;
                        return Ok(GValue::Object(fields));
                    }
                    let key = self.name()?;
                    self.expect(':')?;
                    fields.push((key, self.value()?));
                }
            }
            Some('"') => {
                self.pos += 1;
                let mut s = String::new();
                loop {
                    match self.next() {
                        Some('"') => return Ok(GValue::Str(s)),
                        Some('\\') => match self.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('r') => s.push('\r'),
                            Some('u') => {
                                let hex: String = (0..4).filter_map(|_| self.next()).collect();
                                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                                    Some(c) => s.push(c),
                                    None => return Err(self.error("Invalid unicode escape")),
                                }
                            }
                            Some(c) => s.push(c),
                            None => return Err(self.error("Unterminated string")),
                        },
                        Some(c) => s.push(c),
                        None => return Err(self.error("Unterminated string")),
                    }
                }
            }
            Some('$') => {
                self.pos += 1;
                let name = self.name()?;
                Ok(self
                    .variables
                    .get(&name)
                    .map_or(GValue::Null, GValue::from_json))
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
                {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                let float = text.contains(['.', 'e', 'E']);
                let parsed = if float {
                    text.parse::<f64>().ok().map(GValue::Float)
                } else {
                    text.parse::<i64>().ok().map(GValue::Int)
                };
                parsed.ok_or_else(|| self.error("Invalid number"))
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let word = self.name()?;
                Ok(match word.as_str() {
                    "true" => GValue::Bool(true),
                    "false" => GValue::Bool(false),
                    "null" => GValue::Null,
                    _ => GValue::Enum(word),
                })
            }
            _ => Err(self.error("Unexpected")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_near_vector_query() {
        let q = "{ Get { Product(nearVector: {vector: [0.5,-0.25,0.0000001]}, limit: 5) \
                 { sku name _additional { id distance } } } }";
        let fields = parse(q, &Map::new()).expect("valid");
        assert_eq!(fields[0].name, "Get");
        let class = &fields[0].children[0];
        assert_eq!(class.name, "Product");
        assert_eq!(class.arg("limit"), Some(&GValue::Int(5)));
        assert_eq!(
            class.arg("nearVector").map(ToString::to_string),
            Some("{vector: [0.5, -0.25, 0.0000001]}".to_owned())
        );
        assert_eq!(class.children.len(), 3);
        assert_eq!(class.children[2].children[1].name, "distance");
    }

    #[test]
    fn variables_and_operation_names() {
        let vars = json!({"v": [1.0, 2.0]});
        let q = "query Search($v: [Float]) { Get { P(nearVector: {vector: $v}) { x } } }";
        let fields = parse(q, vars.as_object().expect("object")).expect("valid");
        assert_eq!(
            fields[0].children[0].arg("nearVector"),
            Some(&GValue::Object(vec![(
                "vector".into(),
                GValue::List(vec![GValue::Float(1.0), GValue::Float(2.0)])
            )]))
        );
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let e = parse("{ Get { Product( } }", &Map::new()).expect_err("invalid");
        let err = &e["errors"][0];
        assert!(
            err["message"]
                .as_str()
                .expect("message")
                .starts_with("Syntax Error GraphQL request (1:"),
            "{e}"
        );
        assert_eq!(err["locations"][0]["line"], 1);
    }
}
