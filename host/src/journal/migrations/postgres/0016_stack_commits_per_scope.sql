-- Schema version 16: the commit order per service and per lane, as
-- SQLite's journal does since its version 22 (which says why). `scope` is
-- whose commit a row is: `service NAME`, `''` for a deploy of the whole
-- stack, `ref REF REPOSITORY` for the deploy's lane; the rows kept so far
-- become the whole stack's.
ALTER TABLE stack_commits ADD COLUMN scope TEXT NOT NULL DEFAULT '';
ALTER TABLE stack_commits DROP CONSTRAINT stack_commits_pkey;
ALTER TABLE stack_commits ADD PRIMARY KEY (stack, sha, scope);
CREATE INDEX stack_commits_scope_head ON stack_commits (stack, scope, deploy_id);
