//! Pictures in presentation order from a decoder that gives them in decoding order. Pure:
//! pictures and their timestamps in, pictures to send on out.
//!
//! A stream with B-frames decodes a picture before the ones it is shown after. How many
//! pictures may overtake one is in the stream's VUI when the encoder wrote it, and many
//! cameras do not; so, as libav does, the depth is learnt: it starts at none (no delay for
//! the streams cameras send, which have no B-frames) and grows by one each time a picture
//! comes out behind one already sent, which is dropped. An IDR picture is never overtaken:
//! everything held goes out before it, and it goes out at once, so a detector that decodes
//! only keyframes while the scene is still waits for none.

/// H.264's largest decoded picture buffer: no picture is overtaken by more.
const MOST_REORDERED: usize = 16;

/// Pictures held back until none decoded later can be shown before them.
#[derive(Debug)]
pub struct Reorder<T> {
    /// Decoded, not yet sent: at most `depth`, in presentation order.
    held: Vec<(u64, T)>,
    depth: usize,
    /// The presentation time of the last picture sent.
    sent: Option<u64>,
}

/// What a decoded picture releases.
#[derive(Debug, PartialEq, Eq)]
pub struct Released<T> {
    /// To send on, in presentation order.
    pub out: Vec<T>,
    /// A picture shown before one already sent: too late to send in order.
    pub late: Option<T>,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Self {
            held: Vec::new(),
            depth: 0,
            sent: None,
        }
    }
}

impl<T> Reorder<T> {
    /// Takes a picture decoded with presentation time `pts` (ns; `None` when the stream gave
    /// none, sent as it comes). `idr`: an IDR picture, which no later one precedes.
    pub fn push(&mut self, pts: Option<u64>, idr: bool, picture: T) -> Released<T> {
        let Some(pts) = pts else {
            return Released {
                out: vec![picture],
                late: None,
            };
        };
        if idr {
            let mut out = self.drain();
            out.push(picture);
            self.sent = Some(pts);
            return Released { out, late: None };
        }
        if self.sent.is_some_and(|sent| pts < sent) {
            self.depth = (self.depth + 1).min(MOST_REORDERED);
            return Released {
                out: Vec::new(),
                late: Some(picture),
            };
        }
        let at = self.held.partition_point(|(held, _)| *held <= pts);
        self.held.insert(at, (pts, picture));
        let mut out = Vec::new();
        while self.held.len() > self.depth {
            let (pts, picture) = self.held.remove(0);
            self.sent = Some(pts);
            out.push(picture);
        }
        Released { out, late: None }
    }

    /// Every picture held, in presentation order: the stream ended or drains.
    pub fn drain(&mut self) -> Vec<T> {
        if let Some((pts, _)) = self.held.last() {
            self.sent = Some(*pts);
        }
        self.held.drain(..).map(|(_, picture)| picture).collect()
    }

    /// Forgets what is held and what was sent (a seek or a new stream); keeps the depth
    /// learnt, which is the camera's.
    pub fn clear(&mut self) {
        self.held.clear();
        self.sent = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `(pts, idr)` pictures in decoding order; returns what was sent and dropped.
    fn run(reorder: &mut Reorder<u64>, units: &[(u64, bool)]) -> (Vec<u64>, Vec<u64>) {
        let (mut sent, mut late) = (Vec::new(), Vec::new());
        for &(pts, idr) in units {
            let released = reorder.push(Some(pts), idr, pts);
            sent.extend(released.out);
            late.extend(released.late);
        }
        sent.extend(reorder.drain());
        (sent, late)
    }

    #[test]
    fn a_stream_without_b_frames_waits_for_nothing() {
        let mut reorder = Reorder::default();
        for pts in 0..10 {
            let released = reorder.push(Some(pts), pts == 0, pts);
            assert_eq!(released.out, vec![pts]);
            assert_eq!(released.late, None);
        }
    }

    #[test]
    fn b_frames_come_out_in_presentation_order_once_the_depth_is_learnt() {
        // x264 with two B-frames: display I0 B1 B2 P3 B4 B5 P6 …, decode I0 P3 B1 B2 P6 B4 B5 ….
        let mut decode_order = vec![(0, true)];
        for group in 0..4u64 {
            let p = 3 * group + 3;
            decode_order.extend([(p, false), (p - 2, false), (p - 1, false)]);
        }
        let mut reorder = Reorder::default();
        let (sent, late) = run(&mut reorder, &decode_order);
        // Learning costs the first group's two B-frames; after that, every picture in order.
        assert_eq!(late, vec![1, 2]);
        assert_eq!(sent, vec![0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(reorder.depth, 2);
    }

    #[test]
    fn an_idr_picture_sends_everything_held_and_itself_at_once() {
        let mut reorder = Reorder {
            depth: 2,
            ..Reorder::default()
        };
        assert!(reorder.push(Some(30), false, 30).out.is_empty());
        assert!(reorder.push(Some(10), false, 10).out.is_empty());
        let released = reorder.push(Some(60), true, 60);
        assert_eq!(released.out, vec![10, 30, 60]);
        // Keyframes alone, as a still scene is decoded: none is held back.
        assert_eq!(reorder.push(Some(90), true, 90).out, vec![90]);
    }

    #[test]
    fn the_depth_never_passes_the_largest_picture_buffer() {
        let mut reorder = Reorder::default();
        reorder.push(Some(1_000), false, 0);
        for pts in 0..40 {
            reorder.sent = Some(1_000);
            reorder.push(Some(pts), false, 0);
        }
        assert_eq!(reorder.depth, MOST_REORDERED);
    }

    #[test]
    fn a_picture_without_a_time_is_sent_as_it_comes() {
        let mut reorder = Reorder {
            depth: 3,
            ..Reorder::default()
        };
        assert!(reorder.push(Some(5), false, 5).out.is_empty());
        assert_eq!(reorder.push(None, false, 7).out, vec![7]);
        reorder.clear();
        assert!(reorder.drain().is_empty());
    }
}
