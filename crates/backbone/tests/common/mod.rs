//! Shared by the backbone's integration tests.
pub use polyhead_backbone::testing::model_dir;
