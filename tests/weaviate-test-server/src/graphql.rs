//! Just enough GraphQL for `{ Get { Class(nearVector: {vector: [...]}, limit: N) { props
//! _additional { id distance vector } } } }`, Weaviate's (deprecated) vector search.
//!
//! Answers follow graphql-go as Weaviate uses it: always HTTP 200, either `{"data": ...}` or
//! `{"errors": [{"locations": [...], "message": ..., "path": [...]}]}`.

use serde_json::{Map, Value, json};

/// A parsed selection: `alias: name(args) { children }`.
#[derive(Debug)]
pub(crate) struct Field {
    pub name: String,
    pub alias: Option<String>,
    pub args: Vec<(String, Value)>,
    pub children: Vec<Field>,
    pub line: usize,
    pub column: usize,
}

impl Field {
    pub(crate) fn arg(&self, name: &str) -> Option<&Value> {
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

    fn value(&mut self) -> Result<Value, Value> {
        self.skip_ignored();
        match self.peek() {
            Some('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ignored();
                    if self.peek() == Some(']') {
                        self.pos += 1;
                        return Ok(Value::Array(items));
                    }
                    items.push(self.value()?);
                }
            }
            Some('{') => {
                self.pos += 1;
                let mut map = Map::new();
                loop {
                    self.skip_ignored();
                    if self.peek() == Some('}') {
                        self.pos += 1;
                        return Ok(Value::Object(map));
                    }
                    let key = self.name()?;
                    self.expect(':')?;
                    map.insert(key, self.value()?);
                }
            }
            Some('"') => {
                self.pos += 1;
                let mut s = String::new();
                loop {
                    match self.next() {
                        Some('"') => return Ok(Value::String(s)),
                        Some('\\') => match self.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
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
                Ok(self.variables.get(&name).cloned().unwrap_or(Value::Null))
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
                serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(Value::is_number)
                    .ok_or_else(|| self.error("Invalid number"))
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let word = self.name()?;
                Ok(match word.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    // Enum values (e.g. `operator: Equal`) read as their names.
                    _ => Value::String(word),
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
        assert_eq!(class.arg("limit"), Some(&json!(5)));
        assert_eq!(
            class.arg("nearVector"),
            Some(&json!({"vector": [0.5, -0.25, 0.0000001]}))
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
            Some(&json!({"vector": [1.0, 2.0]}))
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
