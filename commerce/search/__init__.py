"""Product search: text analysis (jieba), full-text index backends (in process, SQLite FTS5, PostgreSQL)
and query understanding. Library code only: callers pass engines, paths and vocabularies in."""
