//! One module per subcommand; each is a struct with `execute(self)`.

pub mod check;
