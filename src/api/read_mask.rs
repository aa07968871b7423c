//! Reads sized for their caller (AIP-157): a `view` (BASIC or FULL, each
//! method with its default) and a `read_mask` naming the top-level fields to
//! return, which takes precedence. What BASIC leaves out of each resource is
//! said once, here (and in `View`'s comment in the contract).

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use crate::{
    error::{Error, Violations},
    pb::{self, v1 as wire},
};

/// The contract's descriptors, decoded once.
fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The set is compiled into the binary from the contract by build.rs;
        // an undecodable one cannot have built.
        DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap_or_default()
    })
}

/// A resource whose reads take a view and a read mask.
pub trait Shaped: Message + Default + Sized {
    /// The message's full name in the contract.
    const NAME: &'static str;
    /// Drops what the BASIC view leaves out.
    fn basic(&mut self);
}

impl Shaped for wire::Customer {
    const NAME: &'static str = "bank.customerknowledge.v1.Customer";
    #[allow(deprecated)] // `birth_date`: still served, so still hidden.
    fn basic(&mut self) {
        self.national_id.clear();
        self.birth_date.clear();
        self.date_of_birth = None;
        self.address.clear();
        self.consents.clear();
        self.links.clear();
    }
}

impl Shaped for wire::Interaction {
    const NAME: &'static str = "bank.customerknowledge.v1.Interaction";
    fn basic(&mut self) {
        self.notes.clear();
    }
}

impl Shaped for wire::KnowledgeItem {
    const NAME: &'static str = "bank.customerknowledge.v1.KnowledgeItem";
    fn basic(&mut self) {
        self.body.clear();
        self.derived_from.clear();
        self.grants.clear();
    }
}

/// How the answers of one read are shaped.
#[derive(Debug, Clone)]
pub struct Shape {
    full: bool,
    /// The field numbers a read mask keeps; None without one.
    keep: Option<Vec<u32>>,
}

impl Shape {
    /// The shape `view` and `read_mask` ask for, for a read of `R` whose
    /// default view is FULL (`full_by_default`, Get) or BASIC (List,
    /// Search); every bad part of them is a field violation.
    pub fn of<R: Shaped>(
        view: i32,
        read_mask: Option<&prost_types::FieldMask>,
        full_by_default: bool,
    ) -> Result<Shape, Error> {
        let mut violations = Violations::default();
        let full = match wire::View::try_from(view) {
            Ok(wire::View::Unspecified) => full_by_default,
            Ok(wire::View::Basic) => false,
            Ok(wire::View::Full) => true,
            Err(_) => {
                violations.add("view", "must be BASIC or FULL");
                full_by_default
            }
        };
        // "*" asks for every field: FULL.
        let mut every_field = false;
        let keep = match read_mask.filter(|m| !m.paths.is_empty()) {
            None => None,
            Some(mask) if mask.paths.iter().any(|p| p == "*") => {
                if mask.paths.len() > 1 {
                    violations.add("read_mask", "\"*\" stands alone");
                }
                every_field = true;
                None
            }
            Some(mask) => {
                let resource = descriptor::<R>()?;
                let mut keep = Vec::with_capacity(mask.paths.len());
                for (i, path) in mask.paths.iter().enumerate() {
                    match resource.get_field_by_name(path) {
                        Some(field) => keep.push(field.number()),
                        None => violations.add(
                            format!("read_mask.paths[{i}]"),
                            format!(
                                "is not a field of {}",
                                R::NAME.rsplit('.').next().unwrap_or(R::NAME)
                            ),
                        ),
                    }
                }
                Some(keep)
            }
        };
        violations.into_result(Shape {
            full: full || every_field || keep.is_some(),
            keep,
        })
    }

    /// `resource` as this shape returns it.
    pub fn apply<R: Shaped>(&self, mut resource: R) -> R {
        if let Some(keep) = &self.keep {
            return masked(resource, keep).unwrap_or_default();
        }
        if !self.full {
            resource.basic();
        }
        resource
    }

    /// `apply` to each of a page.
    pub fn apply_all<R: Shaped>(&self, page: Vec<R>) -> Vec<R> {
        page.into_iter().map(|r| self.apply(r)).collect()
    }
}

fn descriptor<R: Shaped>() -> Result<MessageDescriptor, Error> {
    pool()
        .get_message_by_name(R::NAME)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("{} is not in the contract", R::NAME)))
}

/// `resource` with only the fields numbered in `keep`.
fn masked<R: Shaped>(resource: R, keep: &[u32]) -> Option<R> {
    let descriptor = pool().get_message_by_name(R::NAME)?;
    let mut message =
        DynamicMessage::decode(descriptor.clone(), resource.encode_to_vec().as_slice()).ok()?;
    for field in descriptor.fields() {
        if !keep.contains(&field.number()) {
            message.clear_field(&field);
        }
    }
    R::decode(message.encode_to_vec().as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(paths: &[&str]) -> prost_types::FieldMask {
        prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn customer() -> wire::Customer {
        wire::Customer {
            name: "customers/c1".into(),
            display_name: "张伟".into(),
            national_id: "110101199001011234".into(),
            address: "北京".into(),
            phone: "+86 138 0000 0000".into(),
            etag: "e1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn views_default_per_method_and_basic_drops_the_bulky_and_sensitive_parts() {
        let get = Shape::of::<wire::Customer>(0, None, true).unwrap();
        assert_eq!(get.apply(customer()), customer());
        let list = Shape::of::<wire::Customer>(0, None, false).unwrap();
        let basic = list.apply(customer());
        assert_eq!(basic.national_id, "");
        assert_eq!(basic.address, "");
        assert_eq!(basic.phone, "+86 138 0000 0000");
        let full = Shape::of::<wire::Customer>(wire::View::Full as i32, None, false).unwrap();
        assert_eq!(full.apply(customer()), customer());
    }

    #[test]
    fn a_read_mask_keeps_exactly_the_fields_it_names() {
        let shape = Shape::of::<wire::Customer>(0, Some(&mask(&["name", "etag"])), false).unwrap();
        assert_eq!(
            shape.apply(customer()),
            wire::Customer {
                name: "customers/c1".into(),
                etag: "e1".into(),
                ..Default::default()
            }
        );
        let all = Shape::of::<wire::Customer>(0, Some(&mask(&["*"])), false).unwrap();
        assert_eq!(all.apply(customer()), customer());
    }

    #[test]
    fn unknown_paths_and_views_are_the_callers_mistake() {
        let err =
            Shape::of::<wire::Customer>(9, Some(&mask(&["name", "salary"])), true).unwrap_err();
        let Error::InvalidArgument(violations) = err else {
            panic!("{err:?}");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["view", "read_mask.paths[1]"]);
    }
}
