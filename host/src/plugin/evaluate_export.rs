//! The component's `evaluate` export, found once per component, its type
//! checked on the first instance that calls it, and then called on every
//! later instance without checking it again.
//!
//! The generated bindings (`Redeployer`) check the type of each of the
//! component's exports every time they load an instance: about 2.5 µs of
//! a small push's evaluation (BENCHMARKS.md, part 5, eleventh pass), spent
//! proving again what cannot change. An export's type belongs to the
//! component, and this component imports nothing, so every instance of it
//! has the same. Deliveries call `evaluate` through here; every other
//! export, called far less often, keeps the bindings.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use wasmtime::component::{Component, ComponentExportIndex, Instance, TypedFunc};
use wasmtime::{AsContextMut, Engine};

use super::wit;

/// The interface `evaluate` belongs to, as the component names it, less
/// its `@version`.
const EVALUATOR_INTERFACE: &str = "redeploy:plugin/evaluator";

/// `evaluate`'s parameters, as the bindings type them.
pub(super) type Params<'a> = (
    &'a [wit::Stack],
    &'a wit::Delivery,
    &'a wit::EvaluationContext,
);

/// `evaluate`'s results, as the bindings type them.
pub(super) type Results = (Result<wit::Outcome, wit::Error>,);

/// Where `evaluate` is among one component's exports, and whether its type
/// was checked.
pub(super) struct EvaluateExport {
    index: ComponentExportIndex,
    /// Set once the export at `index` was checked to have the type
    /// `Params -> Results` on an instance of the component. Only ever goes
    /// from `false` to `true`, and guards no other memory, so a relaxed
    /// load is enough: a thread that sees `false` checks again.
    checked: AtomicBool,
}

impl EvaluateExport {
    /// Finds `evaluate` in the evaluator interface `component` exports.
    /// A component exporting none, or more than one (two versions), is
    /// refused: not the component `plugin/` builds.
    pub(super) fn find(engine: &Engine, component: &Component) -> anyhow::Result<Self> {
        let component_type = component.component_type();
        let mut interfaces = component_type
            .exports(engine)
            .map(|(name, _)| name)
            .filter(|name| name.split('@').next() == Some(EVALUATOR_INTERFACE));
        let interface = interfaces
            .next()
            .with_context(|| format!("the component exports no `{EVALUATOR_INTERFACE}`"))?;
        anyhow::ensure!(
            interfaces.next().is_none(),
            "the component exports more than one `{EVALUATOR_INTERFACE}`"
        );
        let interface = component
            .get_export_index(None, interface)
            .with_context(|| format!("the component's `{interface}` is not an export"))?;
        let index = component
            .get_export_index(Some(&interface), "evaluate")
            .with_context(|| {
                format!("the component's `{EVALUATOR_INTERFACE}` has no `evaluate`")
            })?;
        Ok(EvaluateExport {
            index,
            checked: AtomicBool::new(false),
        })
    }

    /// `evaluate` on `instance`, an instance of the component it was found
    /// in: checked against `Params -> Results` the first time, and only
    /// looked up after that. An instance of another component, or an
    /// export of another type, is an error.
    pub(super) fn typed<'a>(
        &self,
        mut store: impl AsContextMut,
        instance: &Instance,
    ) -> wasmtime::Result<TypedFunc<Params<'a>, Results>> {
        if !self.checked.load(Ordering::Relaxed) {
            let typed = instance.get_typed_func::<Params<'a>, Results>(&mut store, self.index)?;
            self.checked.store(true, Ordering::Relaxed);
            return Ok(typed);
        }
        // `get_func` looks an index up only in the component it came from:
        // an instance of another component has no such export.
        let func = instance
            .get_func(&mut store, self.index)
            .ok_or_else(|| wasmtime::Error::msg("`evaluate` is not an export of this instance"))?;
        // SAFETY: `func` is the export at `self.index` of an instance of
        // the component that index belongs to (`get_func` just checked
        // that), and the export at that index was checked to have exactly
        // this type on an instance of the same component (`checked`). The
        // component imports nothing, so its exports' types are the same in
        // every instance.
        Ok(unsafe { TypedFunc::new_unchecked(func) })
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::component::{Component, Linker};
    use wasmtime::{Engine, Store};

    use super::EvaluateExport;

    /// A component exporting `redeploy:plugin/evaluator` with an
    /// `evaluate` of another type than the contract's: the binary form
    /// `wasm-tools parse` gives this text (no `wat` feature in this build).
    ///
    /// ```text
    /// (component
    ///   (core module $m (func (export "f") (result i32) i32.const 7))
    ///   (core instance $i (instantiate $m))
    ///   (func $f (result u32) (canon lift (core func $i "f")))
    ///   (instance $evaluator (export "evaluate" (func $f)))
    ///   (export "redeploy:plugin/evaluator@0.7.0" (instance $evaluator)))
    /// ```
    const WRONG_EVALUATE: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, 0x01, 0x2d, 0x00, 0x61, 0x73, 0x6d, 0x01,
        0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03, 0x02, 0x01, 0x00, 0x07,
        0x05, 0x01, 0x01, 0x66, 0x00, 0x00, 0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x07, 0x0b, 0x00,
        0x09, 0x04, 0x6e, 0x61, 0x6d, 0x65, 0x00, 0x02, 0x01, 0x6d, 0x02, 0x04, 0x01, 0x00, 0x00,
        0x00, 0x07, 0x05, 0x01, 0x40, 0x00, 0x00, 0x79, 0x06, 0x07, 0x01, 0x00, 0x00, 0x01, 0x00,
        0x01, 0x66, 0x08, 0x06, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0f, 0x01, 0x01, 0x01,
        0x00, 0x08, 0x65, 0x76, 0x61, 0x6c, 0x75, 0x61, 0x74, 0x65, 0x01, 0x00, 0x0b, 0x25, 0x01,
        0x00, 0x1f, 0x72, 0x65, 0x64, 0x65, 0x70, 0x6c, 0x6f, 0x79, 0x3a, 0x70, 0x6c, 0x75, 0x67,
        0x69, 0x6e, 0x2f, 0x65, 0x76, 0x61, 0x6c, 0x75, 0x61, 0x74, 0x6f, 0x72, 0x40, 0x30, 0x2e,
        0x37, 0x2e, 0x30, 0x05, 0x00, 0x00, 0x00, 0x35, 0x0e, 0x63, 0x6f, 0x6d, 0x70, 0x6f, 0x6e,
        0x65, 0x6e, 0x74, 0x2d, 0x6e, 0x61, 0x6d, 0x65, 0x01, 0x06, 0x00, 0x11, 0x01, 0x00, 0x01,
        0x6d, 0x01, 0x06, 0x00, 0x12, 0x01, 0x00, 0x01, 0x69, 0x01, 0x05, 0x01, 0x01, 0x00, 0x01,
        0x66, 0x01, 0x0d, 0x05, 0x01, 0x00, 0x09, 0x65, 0x76, 0x61, 0x6c, 0x75, 0x61, 0x74, 0x6f,
        0x72,
    ];

    /// An empty component: `(component)`.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn an_evaluate_of_another_type_is_refused_every_time() {
        let engine = Engine::default();
        let component = Component::new(&engine, WRONG_EVALUATE).unwrap();
        let export = EvaluateExport::find(&engine, &component).unwrap();
        for _ in 0..2 {
            let mut store = Store::new(&engine, ());
            let instance = Linker::new(&engine)
                .instantiate(&mut store, &component)
                .unwrap();
            let err = export.typed(&mut store, &instance).err().unwrap();
            assert!(
                format!("{err:#}").contains("type"),
                "a type error, not a call: {err:#}"
            );
        }
    }

    #[test]
    fn a_component_without_the_evaluator_is_refused() {
        let engine = Engine::default();
        let component = Component::new(&engine, EMPTY).unwrap();
        let err = EvaluateExport::find(&engine, &component).err().unwrap();
        assert!(err.to_string().contains("exports no"), "{err}");
    }

    #[test]
    fn an_instance_of_another_component_is_refused() {
        let engine = Engine::default();
        let one = Component::new(&engine, WRONG_EVALUATE).unwrap();
        let other = Component::new(&engine, WRONG_EVALUATE).unwrap();
        let export = EvaluateExport::find(&engine, &one).unwrap();
        // Pretend the type was checked, as after a first call on `one`.
        export
            .checked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut store = Store::new(&engine, ());
        let instance = Linker::new(&engine)
            .instantiate(&mut store, &other)
            .unwrap();
        let err = export.typed(&mut store, &instance).err().unwrap();
        assert!(err.to_string().contains("not an export"), "{err}");
    }
}
