//! Fiber-local values: scoped bindings, inheritance by forked fibers,
//! masking with `without_binding`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use weft::fiber::FiberLocal;
use weft::{fiber, mock, traceln, Error, ErrorKind, Switch};

static REQUEST: FiberLocal<&'static str> = FiberLocal::new();
static DEPTH: FiberLocal<u32> = FiberLocal::new();

fn show() -> String {
    match REQUEST.get() {
        Some(v) => v.to_string(),
        None => "-".to_string(),
    }
}

#[test]
fn bindings_are_scoped_and_restored() {
    let (r, trace) = mock::run_traced(|_env| {
        traceln!("outside: {}", show());
        REQUEST.with_binding("a", || {
            traceln!("in a: {}", show());
            REQUEST.with_binding("b", || traceln!("in b: {}", show()));
            traceln!("back in a: {}", show());
        });
        traceln!("outside again: {}", show());
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "outside: -",
            "in a: a",
            "in b: b",
            "back in a: a",
            "outside again: -"
        ]
    );
}

#[test]
fn without_binding_masks_and_restores() {
    let (r, trace) = mock::run_traced(|_env| {
        REQUEST.with_binding("outer", || {
            REQUEST.without_binding(|| {
                traceln!("masked: {}", show());
                REQUEST.with_binding("inner", || traceln!("rebound: {}", show()));
                traceln!("still masked: {}", show());
            });
            traceln!("unmasked: {}", show());
        });
        Ok(())
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "masked: -",
            "rebound: inner",
            "still masked: -",
            "unmasked: outer"
        ]
    );
}

#[test]
fn forked_fibers_inherit_the_bindings_at_fork_time() {
    let (r, trace) = mock::run_traced(|_env| {
        Switch::run(|sw| {
            REQUEST.with_binding("parent", || {
                sw.fork(|| {
                    traceln!("child before yield: {}", show());
                    fiber::yield_now()?;
                    // The parent's binding has ended by now; the child keeps
                    // the bindings it was forked with.
                    traceln!("child after yield: {}", show());
                    Ok(())
                });
            });
            sw.fork(|| {
                traceln!("forked after the binding: {}", show());
                Ok(())
            });
            traceln!("parent: {}", show());
            Ok(())
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "child before yield: parent",
            "forked after the binding: -",
            "parent: -",
            "child after yield: parent",
        ]
    );
}

#[test]
fn a_child_rebinding_does_not_affect_its_parent() {
    let (r, trace) = mock::run_traced(|_env| {
        REQUEST.with_binding("parent", || {
            fiber::both(
                || {
                    REQUEST.with_binding("child", || {
                        traceln!("child: {}", show());
                        fiber::yield_now()?;
                        traceln!("child after yield: {}", show());
                        Ok(())
                    })
                },
                || {
                    traceln!("parent while child is bound: {}", show());
                    fiber::yield_now()?;
                    traceln!("parent after yield: {}", show());
                    Ok(())
                },
            )
        })
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "child: child",
            "parent while child is bound: parent",
            "child after yield: child",
            "parent after yield: parent",
        ]
    );
}

#[test]
fn without_binding_in_the_parent_is_inherited() {
    let (r, trace) = mock::run_traced(|_env| {
        REQUEST.with_binding("outer", || {
            REQUEST.without_binding(|| {
                fiber::both(
                    || {
                        traceln!("child of masked parent: {}", show());
                        Ok(())
                    },
                    || Ok(()),
                )
            })
        })
    });
    r.unwrap();
    assert_eq!(trace, ["child of masked parent: -"]);
}

#[test]
fn bindings_survive_suspension_and_are_per_fiber() {
    let (r, trace) = mock::run_traced(|env| {
        let clock = env.mono_clock();
        fiber::all(["x", "y"].map(|name| {
            move || {
                REQUEST.with_binding(name, || {
                    for secs in 1..=2u64 {
                        clock.sleep(Duration::from_secs(secs))?;
                        traceln!("{name} sees {}", show());
                    }
                    Ok(())
                })
            }
        }))
    });
    r.unwrap();
    assert_eq!(
        trace,
        [
            "mock time is now 1",
            "x sees x",
            "y sees y",
            "mock time is now 3",
            "x sees x",
            "y sees y",
        ]
    );
}

#[test]
fn keys_are_independent() {
    let r = mock::run(|_env| {
        REQUEST.with_binding("req", || {
            DEPTH.with_binding(1, || {
                let inner = DEPTH.with_binding(*DEPTH.get().unwrap() + 1, || {
                    (REQUEST.get().map(|v| *v), DEPTH.get().map(|v| *v))
                });
                REQUEST.without_binding(|| {
                    assert_eq!(
                        DEPTH.get().as_deref(),
                        Some(&1),
                        "masking one key leaves others"
                    );
                });
                Ok(inner)
            })
        })
    });
    assert_eq!(r.unwrap(), (Some("req"), Some(2)));
}

#[test]
fn bindings_are_restored_on_error_and_panic() {
    let r = mock::run(|_env| {
        let e = REQUEST.with_binding("failing", || {
            Err::<(), _>(Error::msg(ErrorKind::Io, "failed inside the binding"))
        });
        assert!(e.is_err());
        assert_eq!(REQUEST.get(), None);
        let p = catch_unwind(AssertUnwindSafe(|| {
            REQUEST.with_binding("panicking", || panic!("inside the binding"))
        }));
        assert!(p.is_err());
        assert_eq!(REQUEST.get(), None, "restored while unwinding");
        Ok(())
    });
    r.unwrap();
}

#[test]
fn combinators_inherit_bindings() {
    let r = mock::run(|_env| {
        REQUEST.with_binding("ctx", || {
            let seen = fiber::map(2, 0..4, |_| {
                fiber::yield_now()?;
                Ok(show())
            })?;
            let first = fiber::first(|| Ok(show()), || Ok(show()))?;
            let promised = Switch::run(|sw| sw.fork_promise(|| Ok(show())).wait_result())?;
            Ok((seen, first, promised))
        })
    });
    let (seen, first, promised) = r.unwrap();
    assert_eq!(seen, ["ctx", "ctx", "ctx", "ctx"]);
    assert_eq!(first, "ctx");
    assert_eq!(promised, "ctx");
}

#[test]
fn outside_a_runtime_there_are_no_bindings() {
    assert_eq!(REQUEST.get(), None);
    // `with_binding` just runs the closure.
    assert_eq!(REQUEST.with_binding("ignored", || REQUEST.get()), None);
}
