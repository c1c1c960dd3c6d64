//! The tools beside the product: each drives the server library from the outside.

pub mod demo;
pub mod plugin_run;
pub mod tail;
