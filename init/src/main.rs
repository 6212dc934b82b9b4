//! init (work in progress).
#![allow(dead_code)]
mod config;
mod fsutil;
mod image;
mod image_key;

fn main() {}
