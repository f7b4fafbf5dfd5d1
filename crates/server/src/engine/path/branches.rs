//! Adapted tasks' features: each task version's branch, converted once, and one
//! branch pass per request in which the trunk runs once for every adapted task.
use std::{collections::HashMap, sync::Arc, time::Instant};

use metrics::{counter, histogram};
use polyhead_backbone::{Branch, Input};
use polyhead_heads::HeadArtifact;

use super::{Features, InferencePath};
use crate::{metrics as m, ServerError};

impl InferencePath {
    /// The branch of an adapted head (`None` for a frozen one) with its id, which
    /// keys its features in the cache: task, version and creation time.
    pub(super) fn branch(
        &self,
        head: &HeadArtifact,
    ) -> Result<Option<(String, Arc<Branch>)>, ServerError> {
        if head.manifest.branch.is_none() {
            return Ok(None);
        }
        let m = &head.manifest;
        let id = format!("{}@{}@{}", m.task, m.version, m.created_at);
        let mut branches = self
            .branches
            .lock()
            .map_err(|_| ServerError::Internal("branch table lock poisoned".into()))?;
        if let Some((known, b)) = branches.get(&m.task) {
            if *known == id {
                return Ok(Some((id, b.clone())));
            }
        }
        let branch = polyhead_trainer::branch_of(head, self.info().branch.as_ref())
            .map_err(|e| ServerError::FailedPrecondition(format!("task {:?}: {e}", m.task)))?
            .ok_or_else(|| ServerError::Internal("a branch without weights".into()))?;
        let branch = Arc::new(branch);
        branches.insert(m.task.clone(), (id.clone(), branch.clone()));
        Ok(Some((id, branch)))
    }

    /// Features of `inputs` under each branch: cache hits are free; the inputs any
    /// branch misses are tokenized once and run in one job on the model thread,
    /// under every branch that misses one.
    pub(super) async fn branch_features(
        &self,
        branches: &[(&str, String, Arc<Branch>)],
        inputs: &[Input],
        deadline: Instant,
    ) -> Result<HashMap<String, Features>, ServerError> {
        let mut found: Vec<Vec<Option<Arc<[f32]>>>> = branches
            .iter()
            .map(|(_, id, _)| {
                inputs
                    .iter()
                    .map(|i| self.cache.get(&self.cache.key_for(Some(id), i)))
                    .collect()
            })
            .collect();
        let missing: Vec<usize> = (0..inputs.len())
            .filter(|&i| found.iter().any(|f| f[i].is_none()))
            .collect();
        let hits = found.iter().flatten().filter(|f| f.is_some()).count();
        counter!(m::CACHE_HITS).increment(hits as u64);
        counter!(m::CACHE_MISSES).increment((found.len() * inputs.len() - hits) as u64);
        if !missing.is_empty() {
            let run: Vec<usize> = (0..branches.len())
                .filter(|&b| missing.iter().any(|&i| found[b][i].is_none()))
                .collect();
            let ids = self
                .encode(missing.iter().map(|&i| inputs[i].clone()).collect())
                .await?;
            self.check_tokens(&ids)?;
            let started = Instant::now();
            let job = self
                .encoder
                .embed_branches(ids, run.iter().map(|&b| branches[b].2.clone()).collect());
            let out = tokio::time::timeout_at(deadline.into(), job)
                .await
                .map_err(|_| {
                    ServerError::DeadlineExceeded(
                        "the deadline passed before the adapted tasks' pass finished".into(),
                    )
                })??;
            let took = started.elapsed().as_secs_f64();
            for &b in &run {
                histogram!(m::BRANCH, "task" => branches[b].0.to_owned()).record(took);
            }
            counter!(m::BACKBONE_TEXTS).increment(missing.len() as u64);
            for (emb, &b) in out.iter().zip(&run) {
                for (row, &i) in missing.iter().enumerate() {
                    let v: Arc<[f32]> = Arc::from(emb.row(row));
                    self.cache.put(
                        self.cache.key_for(Some(&branches[b].1), &inputs[i]),
                        v.clone(),
                    );
                    found[b][i] = Some(v);
                }
            }
        }
        branches
            .iter()
            .zip(found)
            .map(|((_, id, _), f)| {
                let rows = f
                    .into_iter()
                    .map(|o| o.ok_or_else(|| ServerError::Internal("branch row missing".into())))
                    .collect::<Result<Features, _>>()?;
                Ok((id.clone(), rows))
            })
            .collect()
    }
}
