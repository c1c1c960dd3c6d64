//! The tools beside the product: each drives the server library from the outside.

pub mod admin;
pub mod chaos;
pub mod config_check;
pub mod demo;
pub mod manual;
pub mod plugin_build;
pub mod plugin_dev;
pub mod plugin_new;
pub mod plugin_run;
pub mod plugin_test;
pub mod synapse_import;
pub mod tail;
