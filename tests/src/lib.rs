pub mod aws_proxy;
pub mod ecr_stand_in;
pub mod emf;
pub mod handler_support;
pub mod iam_actions;
pub mod iam_reference;
pub mod stack_support;
pub mod versions;
