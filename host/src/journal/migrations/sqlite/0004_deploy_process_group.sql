-- Schema version 4: the process group of a started deploy's command, so
-- a runner that finds the deploy left `started` by a dead runner can stop
-- what is left of it before the stack's next deploy starts
-- ([`crate::supervise`]). Null for HTTP actions and for deploys started
-- before version 4.
ALTER TABLE deploys ADD COLUMN pgid INTEGER;
