//! Local stand-ins for what runs in AWS: moto server and a Lambda Runtime API emulator.
pub mod anthropic;
pub mod bedrock;
pub mod lambda;
pub mod moto;
pub mod procfs;
