-- Schema version 19: each CHECK constraint that lists a column's values
-- (`x IN ('a', 'b', ...)`) written as comparisons joined by OR instead.
-- The same constraints (a NULL passes both, as before), cheaper: SQLite
-- evaluates `IN` with a list of more than two constants by building a
-- temporary B-tree of the list (with a pager and a page cache of its own)
-- on every run of every INSERT or UPDATE the constraint applies to, about
-- six per admitted deploy (BENCHMARKS.md, part 5, eighteenth pass).
--
-- Only the text of the tables' definitions changes, nothing stored does,
-- so it is edited in place, as SQLite documents for such changes ("ALTER
-- TABLE", "Making Other Kinds Of Table Schema Changes"): each definition
-- rewritten in `sqlite_schema`; a view created and dropped, which moves
-- the schema cookie on, so that every other connection reads the schema
-- again before its next statement; and `writable_schema = RESET`, which
-- reads it again on this one. All in the migration's transaction.
-- PostgreSQL evaluates an `IN` list as it is: its journal is unchanged.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (state IN
                       (''queued'',''started'',''succeeded'',''failed'',''cancelled'',''interrupted''))',
       'CHECK (state = ''queued'' OR state = ''started'' OR state = ''succeeded'' OR state = ''failed'' OR state = ''cancelled'' OR state = ''interrupted'')')
 WHERE type = 'table' AND name = 'deploys';
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (state IN
                  (''queued'',''started'',''succeeded'',''failed'',''cancelled'',''interrupted''))',
       'CHECK (state = ''queued'' OR state = ''started'' OR state = ''succeeded'' OR state = ''failed'' OR state = ''cancelled'' OR state = ''interrupted'')')
 WHERE type = 'table' AND name = 'deploy_transitions';
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (state IN
                      (''pending'',''created'',''merged'',''conflict'',''invalid'',''denied'',''failed''))',
       'CHECK (state = ''pending'' OR state = ''created'' OR state = ''merged'' OR state = ''conflict'' OR state = ''invalid'' OR state = ''denied'' OR state = ''failed'')')
 WHERE type = 'table' AND name = 'github_deployment_requests';
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (fallback IN (''deployed-directly'',''gave-up'',''not-overridden'',''ran-without-event'',''superseded''))',
       'CHECK (fallback = ''deployed-directly'' OR fallback = ''gave-up'' OR fallback = ''not-overridden'' OR fallback = ''ran-without-event'' OR fallback = ''superseded'')')
 WHERE type = 'table' AND name = 'github_deployment_requests';
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (kind IN (''deployment'',''status'',''callback''))',
       'CHECK (kind = ''deployment'' OR kind = ''status'' OR kind = ''callback'')')
 WHERE type = 'table' AND name = 'outbox';
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (outcome IN (''sent'',''failed'',''skipped''))',
       'CHECK (outcome = ''sent'' OR outcome = ''failed'' OR outcome = ''skipped'')')
 WHERE type = 'table' AND name = 'outbox';
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (event IN (''queued'',''started'',''succeeded'',''failed'',
                          ''cancelled'',''interrupted'',''timed_out'',''refused''))',
       'CHECK (event = ''queued'' OR event = ''started'' OR event = ''succeeded'' OR event = ''failed'' OR event = ''cancelled'' OR event = ''interrupted'' OR event = ''timed_out'' OR event = ''refused'')')
 WHERE type = 'table' AND name = 'notices';
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (outcome IN (''sent'',''failed'',''skipped''))',
       'CHECK (outcome = ''sent'' OR outcome = ''failed'' OR outcome = ''skipped'')')
 WHERE type = 'table' AND name = 'notifications';
CREATE VIEW schema_19_cookie AS SELECT 1;
DROP VIEW schema_19_cookie;
PRAGMA writable_schema = RESET;
