pub mod aws_proxy;
pub mod handler_support;
pub mod stack_support;
