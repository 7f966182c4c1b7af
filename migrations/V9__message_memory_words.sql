-- Text and hybrid search over messages and memories rank by BM25, as collections do (see
-- src/knowledge/search_text.rs, `rank_scope`). Each row's words are stored, so a search reads
-- them rather than parsing every message of the scope it reads; the `$text` filter on these
-- tables reads them too. The configuration is 'simple' (lowercased words, none dropped or
-- stemmed): a tenant's chats and memories can be in any language. No index on them: a search
-- reads one conversation's or one user's rows by their own index, as the vector search does.
-- Adding a stored generated column rewrites the table once, at this upgrade.
ALTER TABLE messages ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;
ALTER TABLE memories ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;
