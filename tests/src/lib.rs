pub mod aws_proxy;
