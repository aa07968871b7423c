//! A deterministic synthetic bank: customers, their interactions and what
//! staff know about them, built from a seed. Every record is a pure function
//! of the seed and its index (each gets its own RNG seeded from both), so the
//! same seed gives the same data whatever the concurrency or the order of
//! loading, and a bench can rebuild any record without the others.
//!
//! Ids, `external_ref`s and external ids all carry the seed, so a rerun with
//! the same seed lands on the rows already stored (ALREADY_EXISTS, import
//! duplicates) instead of adding new ones, and two seeds do not collide.
//! [`load`] sends the records through the service's own gRPC API.

pub mod load;
mod words;

use prost_types::Timestamp;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

use crate::pb::v1::{
    self as pb, Money, carrier, complaint, customer, import_interactions_request::Row, interaction,
    knowledge_item,
};

/// What to generate. [`Spec::default`] is the full synthetic bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub seed: u64,
    pub customers: u64,
    pub branches: u32,
    pub interactions: u64,
    pub knowledge: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            seed: 42,
            customers: 100_000,
            branches: 50,
            interactions: 2_000_000,
            knowledge: 200_000,
        }
    }
}

/// The end of the generated history (fixed, so that the data does not depend
/// on the day it is generated); interactions spread over the two years before.
pub const HISTORY_END_UNIX: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
pub const HISTORY_SECONDS: i64 = 730 * 86_400;

/// Relationship managers per branch.
const RMS_PER_BRANCH: u32 = 10;

/// Share of interactions that go to a Zipf-ranked customer rather than a
/// uniformly chosen one: it gives a few customers very long histories
/// (with 100,000 customers and 2,000,000 interactions the busiest has
/// about 50,000, the tenth about 5,000, the median a dozen).
const SKEWED_SHARE: f64 = 0.3;

/// Record streams: each record's RNG is seeded from (seed, stream, index).
const STREAM_CUSTOMER: u64 = 1;
const STREAM_INTERACTION: u64 = 2;
const STREAM_KNOWLEDGE: u64 = 3;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick<T: Copy>(rng: &mut StdRng, weighted: &[(T, u32)]) -> T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (item, w) in weighted {
        if x < *w {
            return *item;
        }
        x -= w;
    }
    weighted[weighted.len() - 1].0
}

fn one<'a>(rng: &mut StdRng, items: &'a [&'a str]) -> &'a str {
    items.choose(rng).expect("non-empty word list")
}

impl Spec {
    fn rng(&self, stream: u64, index: u64) -> StdRng {
        StdRng::seed_from_u64(splitmix(
            self.seed ^ splitmix(stream.wrapping_shl(48) ^ index),
        ))
    }

    /// What every id of this seed starts with: `s` and the seed in hex.
    pub fn prefix(&self) -> String {
        format!("s{:x}", self.seed)
    }

    /// The id of customer `i` (0-based): `customers/{customer_id(i)}`.
    pub fn customer_id(&self, i: u64) -> String {
        format!("{}-{i:07}", self.prefix())
    }

    pub fn customer_name(&self, i: u64) -> String {
        format!("customers/{}", self.customer_id(i))
    }

    pub fn branch_code(b: u32) -> String {
        format!("B{:02}", b + 1)
    }

    fn rm_code(branch: u32, rm: u32) -> String {
        format!("E{:02}{:02}", branch + 1, rm + 1)
    }

    /// The branch customer `i` belongs to (as generated).
    pub fn branch_of(&self, i: u64) -> u32 {
        self.rng(STREAM_CUSTOMER, i)
            .random_range(0..self.branches.max(1))
    }

    /// A customer index with the generator's skew: mostly uniform, with a
    /// Zipf-like share concentrated on a few customers. The ranks are
    /// scattered over the index range by a fixed permutation, so the busiest
    /// customers are not simply the first ones. Public so that a load
    /// generator reads customers with the same skew.
    pub fn skewed_customer(&self, rng: &mut impl Rng) -> u64 {
        let n = self.customers.max(1);
        if rng.random_bool(SKEWED_SHARE) {
            // Density 1/x on [1, n+1): P(rank = r) ≈ 1 / (r · ln n).
            let u: f64 = rng.random();
            let rank = ((n as f64 + 1.0).powf(u) as u64)
                .saturating_sub(1)
                .min(n - 1);
            self.scatter(rank)
        } else {
            rng.random_range(0..n)
        }
    }

    /// A bijection of 0..customers: rank → index.
    fn scatter(&self, rank: u64) -> u64 {
        let n = self.customers.max(1);
        if n == 1 {
            return 0;
        }
        // A multiplier coprime with n makes rank → a·rank + b (mod n) a bijection.
        let mut a = 2_654_435_761u64 % n;
        while gcd(a, n) != 1 {
            a = (a + 1) % n;
        }
        let b = splitmix(self.seed) % n;
        ((rank as u128 * a as u128 + b as u128) % n as u128) as u64
    }

    /// The CreateCustomer request of customer `i`. No `request_id`: the
    /// caller-supplied `customer_id` already makes a rerun ALREADY_EXISTS.
    pub fn customer(&self, i: u64) -> pb::CreateCustomerRequest {
        let mut rng = self.rng(STREAM_CUSTOMER, i);
        let branch = rng.random_range(0..self.branches.max(1));
        let rm = rng.random_range(0..RMS_PER_BRANCH);
        let corporate = rng.random_bool(0.08);
        let city = rng.random_range(0..words::CITIES.len());
        let display_name = if corporate {
            if rng.random_bool(0.7) {
                format!(
                    "{}{}{}有限公司",
                    words::CITIES[city].0,
                    one(&mut rng, words::COMPANY_WORDS_ZH),
                    one(&mut rng, words::INDUSTRIES_ZH)
                )
            } else {
                format!(
                    "{} {} Co., Ltd",
                    one(&mut rng, words::COMPANY_WORDS_EN),
                    one(&mut rng, words::INDUSTRIES_EN)
                )
            }
        } else {
            let surname = rng.random_range(0..words::SURNAMES.len());
            let given: String = (0..rng.random_range(1..=2))
                .map(|_| *words::GIVEN.choose(&mut rng).unwrap())
                .collect();
            if rng.random_bool(0.85) {
                format!("{}{given}", words::SURNAMES[surname].0)
            } else {
                format!(
                    "{} {}",
                    one(&mut rng, words::ENGLISH_GIVEN),
                    words::SURNAMES[surname].1
                )
            }
        };
        let mut external_ids = vec![pb::ExternalId {
            system: "CIF".into(),
            value: format!("{:x}{i:09}", self.seed),
        }];
        if !corporate && rng.random_bool(0.6) {
            external_ids.push(pb::ExternalId {
                system: "MOBILE".into(),
                value: format!("m{:x}-{i}", self.seed),
            });
        }
        let year = if corporate {
            rng.random_range(1985..=2022)
        } else {
            rng.random_range(1945..=2006)
        };
        let date_of_birth = pb::Date {
            year,
            month: rng.random_range(1..=12),
            day: rng.random_range(1..=28),
        };
        let birth_date = format!("{year}-{:02}-{:02}", date_of_birth.month, date_of_birth.day);
        let national_id = if corporate {
            // A unified social credit code: 18 characters.
            format!("91{:06}{:010}", rng.random_range(110_000..660_000), i)
        } else {
            // Area, birth date, sequence, check character: 18 characters.
            format!(
                "{:06}{}{:03}{}",
                rng.random_range(110_000..660_000),
                birth_date.replace('-', ""),
                i % 1_000,
                *["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "X"]
                    .choose(&mut rng)
                    .unwrap()
            )
        };
        let phone = format!(
            "+86 1{}{} {:04} {:04}",
            rng.random_range(3..=9),
            rng.random_range(0..=9),
            rng.random_range(0..10_000),
            rng.random_range(0..10_000)
        );
        let email = if rng.random_bool(0.4) {
            format!("user{i}@example.cn")
        } else {
            String::new()
        };
        let address = format!(
            "{}市{}区{}路{}号",
            words::CITIES[city].0,
            one(&mut rng, words::DISTRICTS),
            one(&mut rng, words::ROADS),
            rng.random_range(1..900)
        );
        let mut tags: Vec<String> = Vec::new();
        for _ in 0..rng.random_range(0..=3) {
            let tag = if corporate {
                one(&mut rng, words::CORPORATE_TAGS)
            } else {
                one(&mut rng, words::PERSONAL_TAGS)
            };
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.into());
            }
        }
        let mut preferences = std::collections::BTreeMap::new();
        preferences.insert(
            "contact_channel".to_string(),
            pick(
                &mut rng,
                &[
                    ("MOBILE_APP", 50),
                    ("PHONE", 25),
                    ("BRANCH", 15),
                    ("EMAIL", 10),
                ],
            )
            .to_string(),
        );
        preferences.insert(
            "language".to_string(),
            pick(&mut rng, &[("zh", 85), ("en", 15)]).to_string(),
        );
        pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                display_name,
                kind: if corporate {
                    customer::Kind::Corporate
                } else {
                    customer::Kind::Individual
                } as i32,
                external_ids,
                home_branch: Self::branch_code(branch),
                relationship_manager: Self::rm_code(branch, rm),
                national_id,
                phone,
                email,
                date_of_birth: Some(date_of_birth),
                address,
                tags,
                preferences,
                ..Default::default()
            }),
            customer_id: self.customer_id(i),
            request_id: String::new(),
        }
    }

    /// The `external_ref` of interaction `j`: keys the row for imports.
    pub fn interaction_ref(&self, j: u64) -> String {
        format!("{}-i{j:010}", self.prefix())
    }

    /// The RNG of interaction `j` once its customer is drawn, and that
    /// customer.
    fn interaction_start(&self, j: u64) -> (StdRng, u64) {
        let mut rng = self.rng(STREAM_INTERACTION, j);
        let customer = self.skewed_customer(&mut rng);
        (rng, customer)
    }

    /// How many of the generated interactions each customer has, by
    /// customer index: what a load generator needs to pick customers of a
    /// given history length without asking the database.
    pub fn history_lengths(&self) -> Vec<u64> {
        let mut lengths = vec![0; self.customers.max(1) as usize];
        for j in 0..self.interactions {
            lengths[self.interaction_start(j).1 as usize] += 1;
        }
        lengths
    }

    /// Interaction `j` (0-based) with the customer it belongs to, as an
    /// ImportInteractions row.
    pub fn interaction(&self, j: u64) -> Row {
        let (mut rng, customer) = self.interaction_start(j);
        let mut interaction = self.interaction_body(&mut rng);
        // Busier in the day than at night: the hour is drawn by weight.
        let day = rng.random_range(0..HISTORY_SECONDS / 86_400);
        let hour = pick(&mut rng, words::HOUR_WEIGHTS);
        let second = day * 86_400 + hour * 3_600 + rng.random_range(0..3_600);
        interaction.occur_time = Some(Timestamp {
            seconds: HISTORY_END_UNIX - HISTORY_SECONDS + second,
            nanos: 0,
        });
        interaction.external_ref = self.interaction_ref(j);
        Row {
            parent: self.customer_name(customer),
            interaction: Some(interaction),
        }
    }

    /// The content of one interaction (no time, no reference): the kind and
    /// channel mixes, amounts in CNY, products, surveys.
    pub fn interaction_body(&self, rng: &mut StdRng) -> pb::Interaction {
        use interaction::{Channel as C, Kind as K, Sentiment as S};
        let kind = pick(
            rng,
            &[
                (K::Transaction, 70),
                (K::Inquiry, 9),
                (K::ServiceRequest, 7),
                (K::Promotion, 6),
                (K::Survey, 4),
                (K::Complaint, 2),
                (K::FollowUp, 2),
            ],
        );
        let channel = match kind {
            K::Transaction => pick(
                rng,
                &[
                    (C::MobileApp, 48),
                    (C::OnlineBanking, 18),
                    (C::Atm, 16),
                    (C::Branch, 14),
                    (C::Phone, 4),
                ],
            ),
            K::Promotion => pick(
                rng,
                &[
                    (C::MobileApp, 35),
                    (C::SocialMedia, 25),
                    (C::Phone, 20),
                    (C::Email, 15),
                    (C::Branch, 5),
                ],
            ),
            K::Survey => pick(rng, &[(C::MobileApp, 50), (C::Phone, 30), (C::Email, 20)]),
            K::FollowUp => pick(rng, &[(C::Phone, 70), (C::FieldVisit, 15), (C::Branch, 15)]),
            _ => pick(
                rng,
                &[
                    (C::Branch, 30),
                    (C::Phone, 30),
                    (C::Chat, 20),
                    (C::MobileApp, 15),
                    (C::FieldVisit, 5),
                ],
            ),
        };
        let mut out = pb::Interaction {
            channel: channel as i32,
            kind: kind as i32,
            ..Default::default()
        };
        match kind {
            K::Transaction => {
                let (summary, product) = *words::TRANSACTIONS.choose(rng).unwrap();
                out.summary = summary.into();
                out.products = vec![product.into()];
                // Log-uniform from 10 to 500,000 yuan, in fen.
                let yuan = (10f64.ln() + rng.random::<f64>() * (500_000f64 / 10.0).ln()).exp();
                let fen = (yuan * 100.0) as i64;
                out.amount = Some(Money {
                    currency_code: "CNY".into(),
                    units: fen / 100,
                    nanos: (fen % 100) as i32 * 10_000_000,
                });
            }
            K::Inquiry | K::ServiceRequest | K::FollowUp => {
                let list = match kind {
                    K::Inquiry => words::INQUIRIES,
                    K::ServiceRequest => words::SERVICE_REQUESTS,
                    _ => words::FOLLOW_UPS,
                };
                let (summary, product) = *list.choose(rng).unwrap();
                out.summary = summary.into();
                if !product.is_empty() {
                    out.products = vec![product.into()];
                }
                out.sentiment = pick(
                    rng,
                    &[(S::Positive, 40), (S::Neutral, 50), (S::Negative, 10)],
                ) as i32;
                out.outcome = match kind {
                    K::ServiceRequest => pick(rng, &[("resolved", 85), ("escalated", 15)]),
                    K::FollowUp => pick(rng, &[("reached", 70), ("no_answer", 30)]),
                    _ => "",
                }
                .into();
                if rng.random_bool(0.15) {
                    out.notes = one(rng, words::NOTES).into();
                }
            }
            K::Complaint => {
                let (summary, product) = *words::COMPLAINTS.choose(rng).unwrap();
                out.summary = summary.into();
                if !product.is_empty() {
                    out.products = vec![product.into()];
                }
                out.sentiment = S::Negative as i32;
                out.notes = one(rng, words::NOTES).into();
                out.complaint = Some(pb::Complaint {
                    severity: pick(
                        rng,
                        &[
                            (complaint::Severity::Low, 40),
                            (complaint::Severity::Medium, 40),
                            (complaint::Severity::High, 17),
                            (complaint::Severity::Critical, 3),
                        ],
                    ) as i32,
                    ..Default::default()
                });
            }
            K::Promotion => {
                let (summary, product, campaign) = *words::PROMOTIONS.choose(rng).unwrap();
                out.summary = summary.into();
                out.products = vec![product.into()];
                out.campaign = campaign.into();
                out.outcome = pick(
                    rng,
                    &[("accepted", 12), ("declined", 48), ("no_answer", 40)],
                )
                .into();
            }
            K::Survey => {
                out.summary = one(rng, words::SURVEYS).into();
                // Skewed towards satisfied customers, as real CSAT is.
                let csat = pick(rng, &[(5, 40), (4, 32), (3, 15), (2, 8), (1, 5)]);
                out.satisfaction = Some(csat);
                let nps_base = (csat - 1) * 2 + rng.random_range(0..=2);
                out.nps = Some(nps_base.clamp(0, 10));
                out.sentiment = if csat >= 4 {
                    S::Positive
                } else if csat == 3 {
                    S::Neutral
                } else {
                    S::Negative
                } as i32;
            }
            K::Unspecified => unreachable!("not generated"),
        }
        out
    }

    /// The id of knowledge item `k`.
    pub fn knowledge_id(&self, k: u64) -> String {
        format!("{}-k{k:08}", self.prefix())
    }

    /// The CreateKnowledgeItem request of item `k`, in Chinese (about 60%)
    /// or English. Tacit items are carried by a relationship manager and kept
    /// private; explicit ones by the subject's branch (branch-visible), or,
    /// without a subject, by the bank (bank-visible playbooks).
    pub fn knowledge(&self, k: u64) -> pb::CreateKnowledgeItemRequest {
        use knowledge_item::{Kind as K, Nature, Sensitivity, Visibility};
        let mut rng = self.rng(STREAM_KNOWLEDGE, k);
        let chinese = rng.random_bool(0.6);
        let nature = if rng.random_bool(0.35) {
            Nature::Tacit
        } else {
            Nature::Explicit
        };
        let subject_count = pick(&mut rng, &[(0usize, 20), (1, 70), (2, 7), (3, 3)]);
        let mut subjects: Vec<u64> = Vec::new();
        for _ in 0..subject_count {
            let c = self.skewed_customer(&mut rng);
            if !subjects.contains(&c) {
                subjects.push(c);
            }
        }
        let kind = if subjects.is_empty() {
            pick(
                &mut rng,
                &[(K::Playbook, 60), (K::ProductFit, 20), (K::Other, 20)],
            )
        } else {
            pick(
                &mut rng,
                &[
                    (K::Preference, 25),
                    (K::Need, 20),
                    (K::Risk, 10),
                    (K::Relationship, 10),
                    (K::ProductFit, 15),
                    (K::ServiceExperience, 10),
                    (K::ComplaintInsight, 5),
                    (K::Other, 5),
                ],
            )
        };
        let branch = subjects
            .first()
            .map(|&c| self.branch_of(c))
            .unwrap_or_else(|| rng.random_range(0..self.branches.max(1)));
        let (carrier, visibility) = match (nature, subjects.is_empty()) {
            (Nature::Tacit, _) => (
                pb::Carrier {
                    r#type: carrier::Type::Employee as i32,
                    id: Self::rm_code(branch, rng.random_range(0..RMS_PER_BRANCH)),
                },
                Visibility::Private,
            ),
            (_, false) => (
                pb::Carrier {
                    r#type: carrier::Type::Branch as i32,
                    id: Self::branch_code(branch),
                },
                Visibility::Branch,
            ),
            (_, true) => (
                pb::Carrier {
                    r#type: carrier::Type::Bank as i32,
                    id: String::new(),
                },
                Visibility::Bank,
            ),
        };
        let sensitivity = if visibility == Visibility::Bank {
            pick(
                &mut rng,
                &[(Sensitivity::Internal, 90), (Sensitivity::Confidential, 10)],
            )
        } else {
            pick(
                &mut rng,
                &[
                    (Sensitivity::Internal, 78),
                    (Sensitivity::Confidential, 17),
                    (Sensitivity::Restricted, 5),
                ],
            )
        };
        let topic = words::TOPICS.choose(&mut rng).unwrap();
        let (title, sentences, joiner) = if chinese {
            (topic.title_zh, words::SENTENCES_ZH, "")
        } else {
            (topic.title_en, words::SENTENCES_EN, " ")
        };
        let mut body: Vec<&str> = vec![if chinese {
            topic.lead_zh
        } else {
            topic.lead_en
        }];
        for _ in 0..rng.random_range(1..=5) {
            body.push(one(&mut rng, sentences));
        }
        let mut tags = vec![topic.tag.to_string()];
        if rng.random_bool(0.3) {
            let extra = one(&mut rng, words::PERSONAL_TAGS).to_string();
            if !tags.contains(&extra) {
                tags.push(extra);
            }
        }
        pb::CreateKnowledgeItemRequest {
            knowledge_item: Some(pb::KnowledgeItem {
                title: format!("{title} #{k}"),
                body: body.join(joiner),
                nature: nature as i32,
                kind: kind as i32,
                subjects: subjects.iter().map(|&c| self.customer_name(c)).collect(),
                carrier: Some(carrier),
                visibility: visibility as i32,
                sensitivity: sensitivity as i32,
                tags,
                ..Default::default()
            }),
            knowledge_item_id: self.knowledge_id(k),
            request_id: String::new(),
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Search terms that occur in generated knowledge, in both languages: what a
/// load generator searches for.
pub fn search_terms() -> &'static [&'static str] {
    words::SEARCH_TERMS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> Spec {
        Spec {
            seed,
            customers: 1_000,
            branches: 50,
            interactions: 10_000,
            knowledge: 500,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_records() {
        let (a, b) = (small(7), small(7));
        for i in 0..200 {
            assert_eq!(a.customer(i), b.customer(i));
            assert_eq!(a.interaction(i), b.interaction(i));
            assert_eq!(a.knowledge(i), b.knowledge(i));
        }
    }

    #[test]
    fn another_seed_gives_other_records_and_ids() {
        let (a, b) = (small(7), small(8));
        let differ =
            |f: &dyn Fn(&Spec, u64) -> String| (0..200).filter(|&i| f(&a, i) != f(&b, i)).count();
        assert!(differ(&|s, i| format!("{:?}", s.customer(i).customer)) > 190);
        assert!(differ(&|s, i| format!("{:?}", s.interaction(i).interaction)) > 150);
        assert!(differ(&|s, i| format!("{:?}", s.knowledge(i).knowledge_item)) > 190);
        assert_ne!(a.customer_id(0), b.customer_id(0));
        assert_ne!(a.interaction_ref(0), b.interaction_ref(0));
        assert_ne!(a.knowledge_id(0), b.knowledge_id(0));
    }

    #[test]
    fn interactions_are_mostly_transactions_with_a_few_long_histories() {
        let spec = small(1);
        let mut per_customer = vec![0u64; spec.customers as usize];
        let mut transactions = 0;
        for j in 0..spec.interactions {
            let row = spec.interaction(j);
            let i = row.interaction.as_ref().unwrap();
            if i.kind == interaction::Kind::Transaction as i32 {
                transactions += 1;
                assert_eq!(i.amount.as_ref().unwrap().currency_code, "CNY");
            }
            if let Some(csat) = i.satisfaction {
                assert!((1..=5).contains(&csat));
                assert!((0..=10).contains(&i.nps.unwrap()));
            }
            let seconds = i.occur_time.as_ref().unwrap().seconds;
            assert!((HISTORY_END_UNIX - HISTORY_SECONDS..HISTORY_END_UNIX).contains(&seconds));
            let c: u64 = row.parent.rsplit('-').next().unwrap().parse().unwrap();
            per_customer[c as usize] += 1;
        }
        assert!((6_500..7_500).contains(&transactions), "{transactions}");
        assert_eq!(spec.history_lengths(), per_customer);
        per_customer.sort_unstable();
        let busiest = per_customer[per_customer.len() - 1];
        let median = per_customer[per_customer.len() / 2];
        assert!(busiest > 20 * median.max(1), "{busiest} vs median {median}");
    }

    #[test]
    fn scatter_is_a_permutation() {
        for n in [1u64, 2, 7, 50, 1_000] {
            let spec = Spec {
                customers: n,
                ..small(3)
            };
            let mut seen: Vec<u64> = (0..n).map(|r| spec.scatter(r)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }
}
