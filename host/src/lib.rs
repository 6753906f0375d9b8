//! The `redeploy` host: everything that touches the world.
//!
//! The decisions (what a delivery is, whether it is authentic, which stacks
//! deploy) are made by the WebAssembly component built from `plugin/`,
//! loaded by [`plugin::PluginRuntime`]. This crate does the I/O around it:
//! reading configuration ([`config`]), the command line ([`cli`],
//! [`commands`]).

pub mod bounded;
pub mod capacity;
pub mod catch_up;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod commit_order;
pub mod config;
pub mod deploy_log;
pub mod dispatch;
pub mod github;
pub mod headers;
pub mod journal;
pub mod logfiles;
pub mod manual;
pub mod metrics;
pub mod notifications;
pub mod notify;
pub mod ownership;
pub mod plugin;
pub mod poll;
pub mod queue;
pub mod received;
pub mod reload;
pub mod retention;
pub mod rollback;
pub mod runner;
pub mod server;
pub mod stacks;
pub mod supervise;
pub mod text;
pub mod tokens;
pub mod ui;
pub mod wakes;
