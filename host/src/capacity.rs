//! [`Capacity`]: a semaphore whose size a configuration reload can change
//! while work holds its permits (deploys running, deliveries in flight,
//! bytes of bodies held, connections open).

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Semaphore;

/// A counting limit that can be resized. Growing adds permits at once;
/// shrinking takes permits out of circulation as the work holding them
/// finishes (nothing running is stopped), so new work waits until the
/// running work is within the new size.
#[derive(Debug)]
pub struct Capacity {
    semaphore: Arc<Semaphore>,
    size: Mutex<usize>,
}

impl Capacity {
    /// A limit of `size` permits (at most [`Semaphore::MAX_PERMITS`]).
    pub fn new(size: usize) -> Arc<Capacity> {
        let size = size.min(Semaphore::MAX_PERMITS);
        Arc::new(Capacity {
            semaphore: Arc::new(Semaphore::new(size)),
            size: Mutex::new(size),
        })
    }

    /// The semaphore work acquires its permits from.
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.semaphore
    }

    /// The size it has (or will have, once a shrink has taken back its
    /// permits).
    pub fn size(&self) -> usize {
        *self.size.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the limit `to` permits. Shrinking takes the free permits now
    /// and, for the rest, waits (in a task on the current tokio runtime)
    /// for the work holding them to release them; a closed semaphore (the
    /// server stopping) ends the wait.
    pub fn resize(&self, to: usize) {
        let to = to.min(Semaphore::MAX_PERMITS);
        let mut size = self.size.lock().unwrap_or_else(PoisonError::into_inner);
        if to > *size {
            self.semaphore.add_permits(to - *size);
        } else if to < *size {
            let less = *size - to;
            let taken = self.semaphore.forget_permits(less);
            if taken < less {
                let rest = u32::try_from(less - taken).unwrap_or(u32::MAX);
                let semaphore = self.semaphore.clone();
                tokio::spawn(async move {
                    if let Ok(permits) = semaphore.acquire_many_owned(rest).await {
                        permits.forget();
                    }
                });
            }
        }
        *size = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn growing_adds_permits_at_once() {
        let c = Capacity::new(1);
        let _held = c.semaphore().clone().try_acquire_owned().unwrap();
        assert!(c.semaphore().clone().try_acquire_owned().is_err());
        c.resize(3);
        assert_eq!(c.semaphore().available_permits(), 2);
        assert_eq!(c.size(), 3);
    }

    #[tokio::test]
    async fn shrinking_waits_for_running_work_and_stops_nothing() {
        let c = Capacity::new(3);
        let a = c.semaphore().clone().try_acquire_owned().unwrap();
        let b = c.semaphore().clone().try_acquire_owned().unwrap();
        // Two running, one free: down to one takes the free one now and
        // one of the running ones' when it ends.
        c.resize(1);
        assert_eq!(c.size(), 1);
        assert_eq!(c.semaphore().available_permits(), 0);
        drop(a);
        tokio::task::yield_now().await;
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while c.semaphore().available_permits() != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        // The remaining running work ends: one permit, the new size.
        drop(b);
        assert_eq!(c.semaphore().available_permits(), 1);
    }

    #[tokio::test]
    async fn a_closed_semaphore_ends_a_pending_shrink() {
        let c = Capacity::new(2);
        let _a = c.semaphore().clone().try_acquire_owned().unwrap();
        let _b = c.semaphore().clone().try_acquire_owned().unwrap();
        c.resize(0);
        c.semaphore().close();
        tokio::task::yield_now().await;
        assert_eq!(c.size(), 0);
    }
}
