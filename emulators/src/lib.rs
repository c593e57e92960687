//! Local stand-ins for what runs in AWS: moto server and a Lambda Runtime API emulator, and
//! the fake upstreams (the Messages API and the Bedrock runtime).
pub mod answer;
pub mod anthropic;
pub mod aws_latency;
pub mod bedrock;
mod http;
pub mod lambda;
pub mod moto;
pub mod procfs;
