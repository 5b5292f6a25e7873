//! The HTTP request path: named phases in `service`, one file per origin under `origin/`, and
//! one error-to-response mapping in `error`.

pub mod access_log;
pub mod activity;
pub mod auth;
pub mod body;
pub mod error;
pub mod mime;
pub mod origin;
pub mod passthrough;
pub mod path;
pub mod service;
pub mod upgrade;
pub mod websocket;
