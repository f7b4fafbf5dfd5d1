//! Shared by the backbone's integration tests.
#[allow(unused_imports)] // each test file uses what it needs
pub use polyhead_backbone::testing::model_dir;

/// Cosine similarity in f64 (a zero vector gives 0).
#[allow(dead_code)] // not every test file compares vectors
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-12)
}
