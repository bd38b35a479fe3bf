//! One call for the items of the units of work that reach a service together. The jobs of a
//! queue batch run concurrently, and a batch of reconciles reaches its D1 writes within
//! milliseconds of each other; every D1 call is a round trip and CPU of its own
//! (docs/costs.md). So the first unit to call (the leader) lets the others of the same turn of
//! the event loop reach their calls, waits until every unit taking part ([`Gather::enter`]) is
//! waiting too or until its `wait` ends, and then makes one call with everyone's items, each
//! unit's contiguous and in order. It hands each unit its share of the answer.
//!
//! When the gathered call fails, each unit is told to make its own call alone ([`Joined::Alone`]):
//! one unit's bad item must not fail the others. A unit that called alone gets the failure.
//!
//! A unit's future must run to its end once it has called: the leader's carries everyone's
//! call (the consumer's `join_all` never drops one).
//!
//! Generic over the items and the call, so that it runs on the host in tests; `d1.rs` uses it
//! for D1 batches.

use futures_util::future::{poll_fn, select};
use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Units of work calling together. `I` is what a unit sends, `R` what each item answers.
pub struct Gather<I, R> {
    state: RefCell<Gathering<I, R>>,
}

struct Gathering<I, R> {
    /// Units taking part that have not finished.
    units: usize,
    waiting: Vec<Member<I, R>>,
    /// The unit that makes the next call, woken once every unit is waiting.
    leader: Option<Waker>,
    /// Calls made (re-sends after a failed gathered call included), and the calls units
    /// asked for, for the batch's log line.
    calls: u32,
    asked: u32,
}

struct Member<I, R> {
    items: Vec<I>,
    share: Rc<Share<R>>,
}

/// Where a unit finds its share of the call.
struct Share<R> {
    joined: RefCell<Option<Joined<R>>>,
    waker: RefCell<Option<Waker>>,
}

/// A unit's share of a gathered call.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined<R> {
    /// What each of its items answered, in order.
    Answered(Vec<R>),
    /// The call failed and this unit was alone in it.
    Failed(String),
    /// The gathered call failed: make this unit's call alone. The units each counted one
    /// call, and make one more between them than they counted: the unit that `pays` counts it.
    Alone { pays: bool },
}

/// A unit taking part in a [`Gather`] until dropped.
pub struct Unit<'g, I, R> {
    gather: &'g Gather<I, R>,
}

impl<I, R> Drop for Unit<'_, I, R> {
    fn drop(&mut self) {
        let mut state = self.gather.state.borrow_mut();
        state.units = state.units.saturating_sub(1);
        state.wake_leader_if_all_wait();
    }
}

impl<I, R> Gathering<I, R> {
    fn all_wait(&self) -> bool {
        self.waiting.len() >= self.units
    }

    fn wake_leader_if_all_wait(&mut self) {
        if !self.waiting.is_empty() && self.all_wait() {
            if let Some(leader) = self.leader.take() {
                leader.wake();
            }
        }
    }
}

impl<I, R> Default for Gather<I, R> {
    fn default() -> Self {
        Self {
            state: RefCell::new(Gathering {
                units: 0,
                waiting: Vec::new(),
                leader: None,
                calls: 0,
                asked: 0,
            }),
        }
    }
}

impl<I, R> Gather<I, R> {
    /// A unit of work that may call: a leader waits for it while it runs.
    pub fn enter(&self) -> Unit<'_, I, R> {
        self.state.borrow_mut().units += 1;
        Unit { gather: self }
    }

    /// Calls made, and the calls units asked for.
    pub fn served(&self) -> (u32, u32) {
        let state = self.state.borrow();
        (state.calls, state.asked)
    }

    /// Sends `items` in one `call` with those of the other units calling now. `wait` is how
    /// long a leader waits for units that are not calling yet (a timer).
    pub async fn call<C, A, W>(&self, items: Vec<I>, wait: impl FnOnce() -> W, call: C) -> Joined<R>
    where
        C: FnOnce(Vec<I>) -> A,
        A: Future<Output = Result<Vec<R>, String>>,
        W: Future<Output = ()>,
    {
        let share = Rc::new(Share {
            joined: RefCell::new(None),
            waker: RefCell::new(None),
        });
        let leads = {
            let mut state = self.state.borrow_mut();
            state.waiting.push(Member {
                items,
                share: Rc::clone(&share),
            });
            state.wake_leader_if_all_wait();
            state.waiting.len() == 1
        };
        if leads {
            // The other units of this turn of the event loop reach their calls first.
            yield_now().await;
            if !self.state.borrow().all_wait() {
                let everyone = poll_fn(|cx| {
                    let mut state = self.state.borrow_mut();
                    if state.all_wait() {
                        Poll::Ready(())
                    } else {
                        state.leader = Some(cx.waker().clone());
                        Poll::Pending
                    }
                });
                select(pin!(everyone), pin!(wait())).await;
            }
            let members = {
                let mut state = self.state.borrow_mut();
                state.leader = None;
                state.calls += 1;
                state.asked += state.waiting.len() as u32;
                std::mem::take(&mut state.waiting)
            };
            self.call_for(members, call).await;
        }
        poll_fn(|cx| match share.joined.borrow_mut().take() {
            Some(joined) => Poll::Ready(joined),
            None => {
                *share.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Makes the members' call and hands each its share.
    async fn call_for<C, A>(&self, members: Vec<Member<I, R>>, call: C)
    where
        C: FnOnce(Vec<I>) -> A,
        A: Future<Output = Result<Vec<R>, String>>,
    {
        let alone = members.len() == 1;
        let mut items = Vec::new();
        let mut shares = Vec::with_capacity(members.len());
        for member in members {
            shares.push((member.items.len(), member.share));
            items.extend(member.items);
        }
        let sent = items.len();
        let mut answered = match call(items).await {
            Ok(answers) if answers.len() == sent => Ok(answers.into_iter()),
            Ok(answers) => Err(format!(
                "{sent} statements sent, {} answered",
                answers.len()
            )),
            Err(error) => Err(error),
        };
        if answered.is_err() && !alone {
            self.state.borrow_mut().calls += shares.len() as u32;
        }
        for (index, (count, share)) in shares.into_iter().enumerate() {
            let joined = match &mut answered {
                Ok(answers) => Joined::Answered(answers.by_ref().take(count).collect()),
                Err(error) if alone => Joined::Failed(error.clone()),
                Err(_) => Joined::Alone { pays: index == 0 },
            };
            share.joined.replace(Some(joined));
            if let Some(waker) = share.waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}

/// Pending once: lets every other future that is ready now run before this one goes on.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::join_all;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake};

    struct Woken(AtomicBool);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Polls `future` again each time it is woken, until it is ready; `None` once it is pending
    /// and nothing will wake it (a unit left waiting forever).
    fn run<F: Future>(future: F) -> Option<F::Output> {
        let mut future = pin!(future);
        let woken = Arc::new(Woken(AtomicBool::new(true)));
        let waker = Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        while woken.0.swap(false, Ordering::SeqCst) {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return Some(output);
            }
        }
        None
    }

    /// `run`, for a future that must finish.
    fn finish<F: Future>(what: &str, future: F) -> F::Output {
        match run(future) {
            Some(output) => output,
            None => panic!("{what}: a unit was left waiting"),
        }
    }

    /// Pending `turns` times (woken again each time: another turn of the event loop), then
    /// ready.
    async fn after(turns: usize) {
        let mut left = turns;
        poll_fn(|cx| {
            if left == 0 {
                Poll::Ready(())
            } else {
                left -= 1;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await
    }

    /// Never ready, never wakes: a leader with this wait calls only once it is woken because
    /// everyone else is waiting.
    async fn never() {
        poll_fn(|_| Poll::<()>::Pending).await
    }

    /// A service that answers each item with item + 1000 and records the calls made; it
    /// refuses a call holding `poison`.
    struct Service {
        calls: RefCell<Vec<Vec<u32>>>,
        poison: u32,
    }

    impl Service {
        fn new() -> Self {
            Self {
                calls: RefCell::new(Vec::new()),
                poison: u32::MAX,
            }
        }

        async fn call(&self, items: Vec<u32>) -> Result<Vec<u32>, String> {
            self.calls.borrow_mut().push(items.clone());
            after(1).await;
            if items.contains(&self.poison) {
                return Err(format!("{} refused", self.poison));
            }
            Ok(items.into_iter().map(|item| item + 1000).collect())
        }
    }

    #[test]
    fn units_calling_together_make_one_call_and_each_gets_its_own_answers() {
        let gather = Gather::default();
        let service = Service::new();
        let units: Vec<_> = (0..3).map(|_| gather.enter()).collect();
        let answers = finish(
            "every unit is answered",
            join_all((0..3u32).map(|unit| {
                let (gather, service) = (&gather, &service);
                async move {
                    gather
                        .call(vec![unit * 10, unit * 10 + 1], never, |items| {
                            service.call(items)
                        })
                        .await
                }
            })),
        );
        drop(units);
        assert_eq!(*service.calls.borrow(), vec![vec![0, 1, 10, 11, 20, 21]]);
        assert_eq!(
            answers,
            vec![
                Joined::Answered(vec![1000, 1001]),
                Joined::Answered(vec![1010, 1011]),
                Joined::Answered(vec![1020, 1021]),
            ]
        );
        assert_eq!(gather.served(), (1, 3));
    }

    #[test]
    fn a_leader_waits_for_a_unit_that_calls_a_few_turns_later() {
        let gather = Gather::default();
        let service = Service::new();
        let (first, second) = (gather.enter(), gather.enter());
        let answers = finish(
            "both are answered",
            join_all([0, 5].map(|busy| {
                let (gather, service) = (&gather, &service);
                async move {
                    after(busy).await;
                    gather
                        .call(vec![busy as u32], never, |items| service.call(items))
                        .await
                }
            })),
        );
        drop((first, second));
        assert_eq!(*service.calls.borrow(), vec![vec![0, 5]]);
        assert_eq!(
            answers,
            vec![Joined::Answered(vec![1000]), Joined::Answered(vec![1005])]
        );
    }

    #[test]
    fn a_leader_calls_when_its_wait_ends_and_a_unit_is_still_busy() {
        let gather = Gather::default();
        let service = Service::new();
        let _busy = gather.enter();
        let _unit = gather.enter();
        let answered = run(gather.call(vec![7], || after(3), |items| service.call(items)));
        assert_eq!(answered, Some(Joined::Answered(vec![1007])));
        assert_eq!(*service.calls.borrow(), vec![vec![7]]);
    }

    #[test]
    fn a_unit_that_finishes_without_calling_no_longer_holds_the_leader() {
        let gather = Gather::default();
        let service = Service::new();
        let calling = gather.enter();
        let finishing = Cell::new(Some(gather.enter()));
        let (answered, ()) = finish(
            "the leader calls once the other unit is gone",
            futures_util::future::join(
                gather.call(vec![1], never, |items| service.call(items)),
                async {
                    after(3).await;
                    finishing.take();
                },
            ),
        );
        drop(calling);
        assert_eq!(answered, Joined::Answered(vec![1001]));
    }

    #[test]
    fn a_unit_alone_calls_at_once_and_gets_its_failure() {
        let gather = Gather::default();
        let service = Service {
            poison: 3,
            ..Service::new()
        };
        let _unit = gather.enter();
        assert_eq!(
            run(gather.call(vec![3], never, |items| service.call(items))),
            Some(Joined::Failed("3 refused".to_owned()))
        );
        // Not entered at all (a caller outside a batch): no one to wait for either.
        assert_eq!(
            run(Gather::default().call(vec![4], never, |items| service.call(items))),
            Some(Joined::Answered(vec![1004]))
        );
    }

    #[test]
    fn when_a_gathered_call_fails_every_unit_is_told_to_call_alone() {
        let gather = Gather::default();
        let service = Service {
            poison: 3,
            ..Service::new()
        };
        let units: Vec<_> = (0..3).map(|_| gather.enter()).collect();
        let answers = finish(
            "every unit is answered",
            join_all([vec![1], vec![2, 3], vec![4]].map(|items| {
                let (gather, service) = (&gather, &service);
                async move { gather.call(items, never, |items| service.call(items)).await }
            })),
        );
        drop(units);
        let pays = |pays| Joined::Alone { pays };
        assert_eq!(answers, vec![pays(true), pays(false), pays(false)]);
        assert_eq!(
            gather.served(),
            (4, 3),
            "the failed call and three re-sends"
        );
    }

    #[test]
    fn a_call_answering_fewer_items_than_it_was_sent_answers_no_unit() {
        let gather = Gather::default();
        let units: Vec<_> = (0..2).map(|_| gather.enter()).collect();
        let short = |items: Vec<u32>| async move { Ok::<_, String>(items[1..].to_vec()) };
        let answers = finish(
            "both are answered",
            join_all([1, 2].map(|item| {
                let gather = &gather;
                async move { gather.call(vec![item], never, short).await }
            })),
        );
        drop(units);
        assert_eq!(
            answers,
            vec![Joined::Alone { pays: true }, Joined::Alone { pays: false }]
        );
    }
}
