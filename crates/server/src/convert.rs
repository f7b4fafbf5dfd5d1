//! Conversions between library types and protobuf messages.
use polyhead_api::v1 as pb;

/// `Metrics` message of a head's or baseline's metrics.
pub fn metrics_msg(m: &polyhead_heads::Metrics) -> pb::Metrics {
    pb::Metrics {
        accuracy: m.accuracy,
        macro_precision: m.macro_precision,
        macro_recall: m.macro_recall,
        macro_f1: m.macro_f1,
        n: m.n,
    }
}

/// `CandidateScore` message of one candidate `auto` weighed.
pub fn candidate_msg(c: &polyhead_heads::Candidate) -> pb::CandidateScore {
    pb::CandidateScore {
        name: c.name.clone(),
        accuracy: c.accuracy,
        log_loss: c.log_loss,
        layers: u32::try_from(c.layers).unwrap_or(u32::MAX),
        cost_us: c.cost_us.unwrap_or(0.0),
    }
}

/// Every candidate a manifest records, in the order they were scored.
pub fn candidates_msg(m: &polyhead_heads::Manifest) -> Vec<pb::CandidateScore> {
    m.selection
        .as_ref()
        .map(|s| s.candidates.iter().map(candidate_msg).collect())
        .unwrap_or_default()
}

/// Backbone layers a version's branch adapts (0: frozen features).
pub fn adapted_layers(m: &polyhead_heads::Manifest) -> u32 {
    m.branch.as_ref().map_or(0, |b| {
        u32::try_from(b.depth.saturating_sub(b.from_layer)).unwrap_or(u32::MAX)
    })
}

/// One line saying how a head was chosen (empty when it was not selected).
pub fn selection_line(m: &polyhead_heads::Manifest) -> String {
    let Some(s) = &m.selection else {
        return String::new();
    };
    let accuracy = s
        .candidates
        .iter()
        .find(|c| c.name == s.chosen)
        .map_or(f64::NAN, |c| c.accuracy);
    format!(
        "{}: {} (accuracy {accuracy:.3}) of {} candidates",
        s.method,
        s.chosen,
        s.candidates.len()
    )
}

/// Training options from the request (zero / empty fields keep the defaults; an
/// empty head kind is `default_head`, the `train.head` setting).
pub fn train_options(
    o: Option<&pb::TrainOptions>,
    default_head: polyhead_trainer::HeadChoice,
) -> Result<polyhead_trainer::TrainOptions, polyhead_trainer::Error> {
    let mut out = polyhead_trainer::TrainOptions {
        head: default_head,
        ..Default::default()
    };
    let Some(o) = o else { return Ok(out) };
    if !o.head_kind.is_empty() {
        out.head = o.head_kind.parse()?;
    }
    if o.seed != 0 {
        out.seed = o.seed;
    }
    if o.max_epochs != 0 {
        out.max_epochs = o.max_epochs as usize;
    }
    if o.learning_rate != 0.0 {
        out.learning_rate = f64::from(o.learning_rate);
    }
    if o.weight_decay != 0.0 {
        out.weight_decay = f64::from(o.weight_decay);
    }
    if o.validation_fraction != 0.0 {
        out.validation_fraction = f64::from(o.validation_fraction);
    }
    if o.hidden_dim != 0 {
        out.hidden_dim = o.hidden_dim as usize;
    }
    if o.dropout != 0.0 {
        out.dropout = f64::from(o.dropout);
    }
    if !o.adapt.is_empty() {
        out.adapt = o.adapt.parse()?;
    }
    if !o.adapt_layers.is_empty() {
        out.adapt_layers = o.adapt_layers.iter().map(|&d| d as usize).collect();
    }
    if !o.windows.is_empty() {
        out.windows = o.windows.parse()?;
    }
    out.validate()?;
    Ok(out)
}

/// A dataset from request examples.
pub fn dataset(
    examples: &[pb::Example],
) -> Result<polyhead_trainer::Dataset, polyhead_trainer::Error> {
    polyhead_trainer::Dataset::from_pairs(
        examples.iter().map(|e| (e.text.clone(), e.label.clone())),
    )
}
