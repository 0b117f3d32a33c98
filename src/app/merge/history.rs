//! Undo / redo of the merge weights.

/// Most undo steps kept.
pub const HISTORY_LIMIT: usize = 200;

/// Past and undone weight vectors around the current one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeightHistory {
    undo: Vec<Vec<f32>>,
    redo: Vec<Vec<f32>>,
}

impl WeightHistory {
    /// Records that the weights were `previous` before an edit; clears redo.
    /// An edit that changed nothing is not recorded.
    pub fn record(&mut self, previous: Vec<f32>, current: &[f32]) {
        if previous.as_slice() == current {
            return;
        }
        self.undo.push(previous);
        if self.undo.len() > HISTORY_LIMIT {
            self.undo.remove(0);
        }
        self.redo.clear();
    }

    /// The weights before the last edit (and remembers `current` for redo).
    pub fn undo(&mut self, current: &[f32]) -> Option<Vec<f32>> {
        let w = self.undo.pop()?;
        self.redo.push(current.to_vec());
        Some(w)
    }

    /// The weights the last undo left (and remembers `current` for undo).
    pub fn redo(&mut self, current: &[f32]) -> Option<Vec<f32>> {
        let w = self.redo.pop()?;
        self.undo.push(current.to_vec());
        Some(w)
    }

    /// Whether there is something to undo.
    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    /// Whether there is something to redo.
    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Forgets everything (new models, other number of weights).
    pub fn clear(&mut self) {
        self.undo.clear();
        self.redo.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_and_redo_walk_the_edits() {
        let mut h = WeightHistory::default();
        let mut w = vec![0.25f32; 4];
        for v in [0.5, 0.75] {
            let prev = w.clone();
            w[0] = v;
            h.record(prev, &w);
        }
        assert!(h.can_undo() && !h.can_redo());
        w = h.undo(&w).unwrap();
        assert_eq!(w[0], 0.5);
        w = h.undo(&w).unwrap();
        assert_eq!(w[0], 0.25);
        assert_eq!(h.undo(&w), None);
        w = h.redo(&w).unwrap();
        assert_eq!(w[0], 0.5);
        // a new edit drops the redo branch
        let prev = w.clone();
        w[1] = 1.0;
        h.record(prev, &w);
        assert!(!h.can_redo());
        assert_eq!(h.undo(&w).unwrap(), vec![0.5, 0.25, 0.25, 0.25]);
    }

    #[test]
    fn no_op_edits_are_not_recorded_and_the_length_is_bounded() {
        let mut h = WeightHistory::default();
        h.record(vec![1.0], &[1.0]);
        assert!(!h.can_undo());
        for i in 0..HISTORY_LIMIT + 10 {
            h.record(vec![i as f32], &[-1.0]);
        }
        let mut n = 0;
        while h.undo(&[0.0]).is_some() {
            n += 1;
        }
        assert_eq!(n, HISTORY_LIMIT);
    }
}
