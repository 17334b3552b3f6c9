//! The `halo` platform: HaloPSA tickets, actions, clients, sites and assets.

pub mod client;

pub use client::{HaloAuth, HaloClient};
