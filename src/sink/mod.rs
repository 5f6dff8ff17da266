//! Where change events end up: Weaviate (issue 4).
