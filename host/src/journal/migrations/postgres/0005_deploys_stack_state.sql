-- Version 5: a stack's deploys in one state (its queued ones to claim or
-- cancel, its started ones to recover) found without reading the stack's
-- whole history.
CREATE INDEX IF NOT EXISTS deploys_stack_state_id ON deploys (stack, state, id);
