//! A fake HaloPSA API.

#![allow(dead_code)]

mod spec;
