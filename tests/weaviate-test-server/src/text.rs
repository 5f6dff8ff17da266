//! Text as Weaviate's inverted index sees it: tokenization, stopwords and BM25F scoring.
//!
//! Behaviour read from Weaviate's `entities/tokenizer/tokenizer.go` (tokenizations),
//! `adapters/repos/db/inverted/stopwords/presets.go` (the English preset),
//! `adapters/repos/db/inverted/bm25_searcher.go` and `inverted/terms/terms.go` (BM25F):
//!
//! - `word` splits on every character that is neither a letter nor a digit and lowercases;
//!   `lowercase` splits on white space and lowercases; `whitespace` splits on white space;
//!   `field` is the whole value, trimmed. Other tokenizations (trigram, gse, kagome) are refused
//!   rather than approximated.
//! - Stopwords are removed from QUERIES (filter values, bm25 queries) of `word` properties only;
//!   they stay in the index and count towards a property's length.
//! - BM25F: one score per query term over all searched properties of the same tokenization: the
//!   term frequencies are summed (each times its property boost), so are the lengths of the
//!   properties that contain the term; `tf = f / (f + k1 (1 - b + b L / avgL))`,
//!   `idf = ln(1 + (N - n + 0.5) / (n + 0.5))` times the number of times the term is in the
//!   query, with N the objects of the class and n those containing the term (a filter does not
//!   change n); `avgL` is the mean of the searched properties' mean lengths (40 when unknown).

use std::collections::HashMap;

use serde_json::Value;

/// Weaviate's `en` stopword preset.
const ENGLISH_STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// The message Weaviate answers when a filter or query holds nothing but stopwords.
pub(crate) const ONLY_STOPWORDS: &str = "invalid search term, only stopwords provided. \
     Stopwords can be configured in class.invertedIndexConfig.stopwords";

/// Split `text` as a property with this tokenization is indexed.
pub(crate) fn tokenize(text: &str, tokenization: &str) -> Result<Vec<String>, String> {
    let not_word = |c: char| !c.is_alphanumeric();
    Ok(match tokenization {
        "word" => text
            .split(not_word)
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase)
            .collect(),
        "lowercase" => text.split_whitespace().map(str::to_lowercase).collect(),
        "whitespace" => text.split_whitespace().map(str::to_owned).collect(),
        "field" => {
            let t = text.trim();
            if t.is_empty() {
                Vec::new()
            } else {
                vec![t.to_owned()]
            }
        }
        other => {
            return Err(format!(
                "weaviate-test-server does not implement tokenization '{other}'"
            ));
        }
    })
}

/// Split a `Like` pattern: as [`tokenize`], but `*` and `?` stay inside `word` tokens.
pub(crate) fn tokenize_pattern(text: &str, tokenization: &str) -> Result<Vec<String>, String> {
    if tokenization == "word" {
        return Ok(text
            .split(|c: char| !(c.is_alphanumeric() || c == '*' || c == '?'))
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase)
            .collect());
    }
    tokenize(text, tokenization)
}

/// The stopwords of a class (`invertedIndexConfig.stopwords`: preset, additions, removals).
pub(crate) struct Stopwords {
    words: Vec<String>,
}

impl Stopwords {
    pub(crate) fn of(class: &Value) -> Stopwords {
        let config = &class["invertedIndexConfig"]["stopwords"];
        let list = |key: &str| -> Vec<String> {
            config[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut words: Vec<String> = match config["preset"].as_str().unwrap_or("en") {
            "none" => Vec::new(),
            _ => ENGLISH_STOPWORDS.iter().map(|w| (*w).to_owned()).collect(),
        };
        words.extend(list("additions"));
        let removals = list("removals");
        words.retain(|w| !removals.contains(w));
        Stopwords { words }
    }

    fn contains(&self, word: &str) -> bool {
        self.words.iter().any(|w| w == word)
    }

    /// Query terms of `text` for a property with this tokenization: stopwords removed for
    /// `word`.
    pub(crate) fn query_terms(
        &self,
        text: &str,
        tokenization: &str,
    ) -> Result<Vec<String>, String> {
        let mut terms = tokenize(text, tokenization)?;
        if tokenization == "word" {
            terms.retain(|t| !self.contains(t));
        }
        Ok(terms)
    }
}

/// A property searched by BM25, with its boost (`name^2`).
pub(crate) struct SearchedProperty {
    pub name: String,
    pub boost: f64,
    pub tokenization: String,
}

/// The text properties a keyword search covers: those named (with optional `^boost`), or every
/// searchable text property of the class.
pub(crate) fn searched_properties(
    class: &Value,
    named: Option<&[String]>,
) -> Result<Vec<SearchedProperty>, String> {
    let class_name = class["class"].as_str().unwrap_or_default();
    let props = class["properties"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let is_text = |p: &Value| {
        matches!(
            p["dataType"][0].as_str(),
            Some("text" | "text[]" | "string" | "string[]")
        )
    };
    let searchable = |p: &Value| p["indexSearchable"].as_bool().unwrap_or(true);
    let tokenization = |p: &Value| p["tokenization"].as_str().unwrap_or("word").to_owned();
    let Some(named) = named else {
        return Ok(props
            .iter()
            .filter(|p| is_text(p) && searchable(p))
            .map(|p| SearchedProperty {
                name: p["name"].as_str().unwrap_or_default().to_owned(),
                boost: 1.0,
                tokenization: tokenization(p),
            })
            .collect());
    };
    let mut out: Vec<SearchedProperty> = Vec::new();
    for entry in named {
        let (name, boost) = match entry.split_once('^') {
            Some((name, boost)) => (name, boost.parse::<f64>().unwrap_or(0.0)),
            None => (entry.as_str(), 1.0),
        };
        let Some(p) = props.iter().find(|p| p["name"] == name) else {
            return Err(format!(
                "no such prop with name '{name}' found in class '{class_name}' in the schema. \
                 Check your schema files for which properties in this class are available"
            ));
        };
        if !is_text(p) {
            return Err(format!(
                "cannot handle datatype '{}' of property '{name}'",
                p["dataType"][0].as_str().unwrap_or_default()
            ));
        }
        if !searchable(p) {
            return Err(format!(
                "could not find bucket for property {name}: property is not searchable \
                 (indexSearchable is false)"
            ));
        }
        // A repeated property keeps its last boost and counts once.
        match out.iter_mut().find(|s| s.name == name) {
            Some(existing) => existing.boost = boost,
            None => out.push(SearchedProperty {
                name: name.to_owned(),
                boost,
                tokenization: tokenization(p),
            }),
        }
    }
    Ok(out)
}

/// The indexed tokens of one property value (text or text[]).
fn value_tokens(value: Option<&Value>, tokenization: &str) -> Result<Vec<String>, String> {
    match value {
        Some(Value::String(s)) => tokenize(s, tokenization),
        Some(Value::Array(items)) => {
            let mut all = Vec::new();
            for item in items.iter().filter_map(Value::as_str) {
                all.extend(tokenize(item, tokenization)?);
            }
            Ok(all)
        }
        _ => Ok(Vec::new()),
    }
}

/// One document as BM25 sees it: per searched property, its tokens.
pub(crate) struct Bm25Doc<'a> {
    pub properties: &'a serde_json::Map<String, Value>,
}

/// BM25F scores of `candidates` (indices into `docs`) for `query`. `docs` is every object of the
/// class (for N, n and the mean lengths); only candidates are scored. Returns (index, score) for
/// each candidate that contains at least one query term.
pub(crate) fn bm25f(
    class: &Value,
    props: &[SearchedProperty],
    query: &str,
    docs: &[Bm25Doc<'_>],
    candidates: &[usize],
) -> Result<Vec<(usize, f32)>, String> {
    let k1 = class["invertedIndexConfig"]["bm25"]["k1"]
        .as_f64()
        .unwrap_or(1.2);
    let b = class["invertedIndexConfig"]["bm25"]["b"]
        .as_f64()
        .unwrap_or(0.75);
    let stopwords = Stopwords::of(class);
    let n_docs = docs.len() as f64;

    // Per property: every document's tokens (term -> frequency) and length.
    let mut per_prop: Vec<Vec<(HashMap<String, f64>, f64)>> = Vec::with_capacity(props.len());
    let mut mean_sum = 0.0;
    let mut mean_count = 0usize;
    for p in props {
        let mut rows = Vec::with_capacity(docs.len());
        let (mut total, mut present) = (0.0, 0usize);
        for doc in docs {
            let value = doc.properties.get(&p.name);
            let tokens = value_tokens(value, &p.tokenization)?;
            if value.is_some() {
                total += tokens.len() as f64;
                present += 1;
            }
            let mut freq: HashMap<String, f64> = HashMap::new();
            for t in &tokens {
                *freq.entry(t.clone()).or_default() += 1.0;
            }
            rows.push((freq, tokens.len() as f64));
        }
        if present > 0 {
            mean_sum += total / present as f64;
            mean_count += 1;
        }
        per_prop.push(rows);
    }
    let mut avg_len = mean_sum / mean_count as f64;
    if avg_len.is_nan() || avg_len == 0.0 {
        avg_len = 40.0;
    }

    // Query terms per tokenization, duplicates counted.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, p) in props.iter().enumerate() {
        match groups.iter_mut().find(|(t, _)| *t == p.tokenization) {
            Some((_, members)) => members.push(i),
            None => groups.push((p.tokenization.clone(), vec![i])),
        }
    }
    let mut scores = vec![0.0f64; candidates.len()];
    let mut matched = vec![false; candidates.len()];
    for (tokenization, members) in &groups {
        let mut terms: Vec<(String, f64)> = Vec::new();
        for t in stopwords.query_terms(query, tokenization)? {
            match terms.iter_mut().find(|(x, _)| *x == t) {
                Some((_, count)) => *count += 1.0,
                None => terms.push((t, 1.0)),
            }
        }
        for (term, duplicates) in &terms {
            let containing = (0..docs.len())
                .filter(|&d| members.iter().any(|&m| per_prop[m][d].0.contains_key(term)))
                .count() as f64;
            if containing == 0.0 {
                continue;
            }
            let n_total = n_docs.max(containing);
            let idf = (1.0 + (n_total - containing + 0.5) / (containing + 0.5)).ln() * duplicates;
            for (slot, &d) in candidates.iter().enumerate() {
                let (mut f, mut len, mut found) = (0.0, 0.0, false);
                for &m in members {
                    let (freq, plen) = &per_prop[m][d];
                    if let Some(count) = freq.get(term) {
                        f += count * props[m].boost;
                        len += plen;
                        found = true;
                    }
                }
                if !found {
                    continue;
                }
                matched[slot] = true;
                let tf = f / (f + k1 * (1.0 - b + b * len / avg_len));
                scores[slot] += tf * idf;
            }
        }
    }
    Ok(candidates
        .iter()
        .enumerate()
        .filter(|(slot, _)| matched[*slot])
        .map(|(slot, &d)| (d, scores[slot] as f32))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokenizations() {
        assert_eq!(
            tokenize("Red-Shirt, size XL!", "word").expect("word"),
            ["red", "shirt", "size", "xl"]
        );
        assert_eq!(
            tokenize("Red-Shirt XL", "lowercase").expect("lowercase"),
            ["red-shirt", "xl"]
        );
        assert_eq!(
            tokenize("Red-Shirt XL", "whitespace").expect("whitespace"),
            ["Red-Shirt", "XL"]
        );
        assert_eq!(
            tokenize("  Red Shirt ", "field").expect("field"),
            ["Red Shirt"]
        );
        assert!(tokenize("x", "trigram").is_err());
        assert_eq!(
            tokenize_pattern("Red*-sh?rt", "word").expect("pattern"),
            ["red*", "sh?rt"]
        );
    }

    #[test]
    fn stopwords_follow_the_class_config() {
        let class = json!({"invertedIndexConfig": {"stopwords": {
            "preset": "en", "additions": ["shirt"], "removals": ["the"]}}});
        let s = Stopwords::of(&class);
        assert_eq!(
            s.query_terms("the red shirt of a king", "word")
                .expect("terms"),
            ["the", "red", "king"]
        );
        assert_eq!(
            s.query_terms("the a", "whitespace").expect("terms"),
            ["the", "a"]
        );
    }

    #[test]
    fn bm25f_matches_the_formula() {
        let class = json!({"class": "P", "properties": [
            {"name": "name", "dataType": ["text"], "tokenization": "word", "indexSearchable": true}]});
        let a = json!({"name": "red shirt"});
        let b = json!({"name": "blue shirt with red stripes and more words"});
        let c = json!({"name": "green hat"});
        let docs: Vec<Bm25Doc<'_>> = [&a, &b, &c]
            .iter()
            .map(|v| Bm25Doc {
                properties: v.as_object().expect("object"),
            })
            .collect();
        let props = searched_properties(&class, None).expect("props");
        let scores = bm25f(&class, &props, "red", &docs, &[0, 1, 2]).expect("scores");
        assert_eq!(scores.len(), 2, "green hat has no 'red'");
        // N = 3, n = 2; lengths 2, 8, 2 -> mean 4.
        let idf = (1.0f64 + (3.0 - 2.0 + 0.5) / (2.0 + 0.5)).ln();
        let tf = |len: f64| 1.0 / (1.0 + 1.2 * (1.0 - 0.75 + 0.75 * len / 4.0));
        assert!((f64::from(scores[0].1) - idf * tf(2.0)).abs() < 1e-6);
        assert!((f64::from(scores[1].1) - idf * tf(8.0)).abs() < 1e-6);
        assert!(
            scores[0].1 > scores[1].1,
            "the shorter document ranks first"
        );
    }
}
