//! Word lists of the synthetic bank. Made up for the generator: any likeness
//! to real people or companies is chance.

/// (Chinese, pinyin) surnames, the most common first.
pub const SURNAMES: &[(&str, &str)] = &[
    ("王", "Wang"),
    ("李", "Li"),
    ("张", "Zhang"),
    ("刘", "Liu"),
    ("陈", "Chen"),
    ("杨", "Yang"),
    ("黄", "Huang"),
    ("赵", "Zhao"),
    ("吴", "Wu"),
    ("周", "Zhou"),
    ("徐", "Xu"),
    ("孙", "Sun"),
    ("马", "Ma"),
    ("朱", "Zhu"),
    ("胡", "Hu"),
    ("郭", "Guo"),
    ("何", "He"),
    ("林", "Lin"),
    ("罗", "Luo"),
    ("高", "Gao"),
];

pub const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华", "玉", "萍", "红", "鹏", "辉", "建", "国", "文",
    "晨", "宇", "欣", "怡", "浩", "然", "子", "轩",
];

pub const ENGLISH_GIVEN: &[&str] = &[
    "Emily", "David", "Grace", "Kevin", "Linda", "Michael", "Sophia", "Jason", "Vivian", "Eric",
    "Cathy", "Tony", "Helen", "Peter", "Iris", "Frank",
];

/// (Chinese, English) cities.
pub const CITIES: &[(&str, &str)] = &[
    ("上海", "Shanghai"),
    ("北京", "Beijing"),
    ("深圳", "Shenzhen"),
    ("广州", "Guangzhou"),
    ("杭州", "Hangzhou"),
    ("南京", "Nanjing"),
    ("成都", "Chengdu"),
    ("武汉", "Wuhan"),
    ("苏州", "Suzhou"),
    ("西安", "Xi'an"),
];

pub const DISTRICTS: &[&str] = &[
    "浦东", "黄浦", "徐汇", "朝阳", "海淀", "南山", "天河", "西湖", "鼓楼", "高新",
];
pub const ROADS: &[&str] = &[
    "人民", "中山", "解放", "建设", "和平", "长江", "世纪", "南京", "淮海", "科技",
];

pub const COMPANY_WORDS_ZH: &[&str] = &[
    "宏达", "华盛", "新源", "金桥", "恒通", "远航", "博瑞", "天成",
];
pub const INDUSTRIES_ZH: &[&str] = &[
    "贸易", "科技", "物流", "制造", "餐饮", "建材", "医药", "服饰",
];
pub const COMPANY_WORDS_EN: &[&str] = &[
    "Acme",
    "Golden Bridge",
    "Eastwind",
    "Harbor",
    "Summit",
    "Bluesky",
];
pub const INDUSTRIES_EN: &[&str] = &[
    "Trading",
    "Logistics",
    "Technology",
    "Manufacturing",
    "Foods",
];

pub const PERSONAL_TAGS: &[&str] = &[
    "wealth",
    "payroll",
    "youth",
    "senior",
    "mortgage",
    "credit-card",
    "vip-candidate",
    "digital",
    "overseas",
    "family",
];
pub const CORPORATE_TAGS: &[&str] = &[
    "sme",
    "payroll",
    "trade-finance",
    "cash-management",
    "export",
];

/// Weights of the hour of day (UTC+8 is not modelled: the shape is what
/// matters), quiet at night and busiest around noon and the evening.
pub const HOUR_WEIGHTS: &[(i64, u32)] = &[
    (0, 2),
    (1, 1),
    (2, 1),
    (3, 1),
    (4, 1),
    (5, 1),
    (6, 2),
    (7, 4),
    (8, 6),
    (9, 8),
    (10, 9),
    (11, 9),
    (12, 10),
    (13, 8),
    (14, 8),
    (15, 8),
    (16, 7),
    (17, 7),
    (18, 7),
    (19, 8),
    (20, 8),
    (21, 7),
    (22, 5),
    (23, 3),
];

/// (summary, product) of transactions.
pub const TRANSACTIONS: &[(&str, &str)] = &[
    ("Card payment", "DEBIT-CARD"),
    ("刷卡消费", "DEBIT-CARD"),
    ("Credit card purchase", "CREDIT-CARD"),
    ("信用卡消费", "CREDIT-CARD"),
    ("Transfer to another bank", "DEBIT-CARD"),
    ("跨行转账", "DEBIT-CARD"),
    ("ATM withdrawal", "DEBIT-CARD"),
    ("ATM取款", "DEBIT-CARD"),
    ("Salary credited", "PAYROLL"),
    ("工资入账", "PAYROLL"),
    ("Time deposit opened", "DEPOSIT-1Y"),
    ("三个月定期存款", "DEPOSIT-3M"),
    ("Money market fund subscription", "FUND-MMF"),
    ("货币基金申购", "FUND-MMF"),
    ("Mortgage repayment", "LOAN-MORTGAGE"),
    ("房贷还款", "LOAN-MORTGAGE"),
    ("Insurance premium", "INS-LIFE"),
    ("USD purchase", "FX-USD"),
    ("Gold card annual fee", "CARD-GOLD"),
    ("理财产品申购", "WM-EDU-01"),
];

/// (summary, product or "") of inquiries.
pub const INQUIRIES: &[(&str, &str)] = &[
    ("Asked about education savings", "WM-EDU-01"),
    ("咨询子女教育储蓄", "WM-EDU-01"),
    ("Asked about mortgage rates", "LOAN-MORTGAGE"),
    ("咨询房贷利率", "LOAN-MORTGAGE"),
    ("Asked about retirement plans", "PENSION-01"),
    ("咨询养老规划", "PENSION-01"),
    ("Asked about credit card limit", "CREDIT-CARD"),
    ("咨询信用卡额度", "CREDIT-CARD"),
    ("Asked about FX rates", "FX-USD"),
    ("咨询外汇牌价", "FX-USD"),
    ("咨询手机银行使用", ""),
    ("Asked about branch opening hours", ""),
];

pub const SERVICE_REQUESTS: &[(&str, &str)] = &[
    ("Card replacement", "DEBIT-CARD"),
    ("补办银行卡", "DEBIT-CARD"),
    ("Raise credit card limit", "CREDIT-CARD"),
    ("提高信用卡额度", "CREDIT-CARD"),
    ("Update address", ""),
    ("修改预留手机号", ""),
    ("Reset online banking password", ""),
    ("开具存款证明", "DEPOSIT-1Y"),
];

pub const FOLLOW_UPS: &[(&str, &str)] = &[
    ("回访：理财产品到期", "WM-EDU-01"),
    ("Follow-up on complaint resolution", ""),
    ("回访：投诉处理结果", ""),
    ("Follow-up on mortgage application", "LOAN-MORTGAGE"),
];

pub const COMPLAINTS: &[(&str, &str)] = &[
    ("Card blocked abroad", "DEBIT-CARD"),
    ("境外刷卡被拒", "DEBIT-CARD"),
    ("Unexpected annual fee", "CARD-GOLD"),
    ("年费扣款有异议", "CARD-GOLD"),
    ("Long queue at the branch", ""),
    ("网点排队时间过长", ""),
    ("Mobile app transfer failed", "DEBIT-CARD"),
    ("理财收益低于预期", "WM-EDU-01"),
];

/// (summary, product, campaign) of promotions.
pub const PROMOTIONS: &[(&str, &str, &str)] = &[
    (
        "Offered a wealth management product",
        "WM-EDU-01",
        "2025-Q3-WEALTH",
    ),
    ("推荐理财产品", "WM-EDU-01", "2025-Q3-WEALTH"),
    ("Offered a gold card upgrade", "CARD-GOLD", "2025-Q1-CARDS"),
    ("推荐信用卡升级", "CARD-GOLD", "2025-Q1-CARDS"),
    ("推荐养老金账户", "PENSION-01", "2024-Q4-PENSION"),
    ("Offered a pension account", "PENSION-01", "2024-Q4-PENSION"),
    ("推荐房贷转按揭", "LOAN-MORTGAGE", "2024-Q2-MORTGAGE"),
];

pub const SURVEYS: &[&str] = &[
    "Post-visit satisfaction survey",
    "网点服务满意度调查",
    "Mobile app NPS survey",
    "手机银行推荐度调查",
    "客服热线满意度回访",
];

pub const NOTES: &[&str] = &[
    "客户情绪较激动，已安抚并承诺三个工作日内回复。",
    "Customer prefers to be called after 6 pm.",
    "客户计划明年为子女出国留学准备资金。",
    "Customer mentioned a planned home purchase in Hangzhou.",
    "客户对手续费比较敏感，建议推荐免年费产品。",
    "Spoke with the customer's spouse; the customer was travelling.",
];

/// A knowledge topic: titles and a lead sentence in both languages, and the
/// tag it carries.
pub struct Topic {
    pub title_zh: &'static str,
    pub title_en: &'static str,
    pub lead_zh: &'static str,
    pub lead_en: &'static str,
    pub tag: &'static str,
}

pub const TOPICS: &[Topic] = &[
    Topic {
        title_zh: "客户偏好手机银行办理业务",
        title_en: "Prefers the mobile app for everyday banking",
        lead_zh: "客户习惯通过手机银行转账和理财，很少到网点。",
        lead_en: "The customer does transfers and wealth products in the mobile app and rarely visits a branch.",
        tag: "digital",
    },
    Topic {
        title_zh: "子女教育金规划需求",
        title_en: "Saving for the children's education",
        lead_zh: "客户希望为子女准备留学教育金，关注稳健型理财。",
        lead_en: "The customer is saving for a child's studies abroad and wants low-risk wealth products.",
        tag: "wealth",
    },
    Topic {
        title_zh: "退休养老规划",
        title_en: "Retirement plans",
        lead_zh: "客户临近退休，关注养老金账户和稳定收益。",
        lead_en: "The customer is close to retirement and asks about pension accounts and steady income.",
        tag: "senior",
    },
    Topic {
        title_zh: "房贷提前还款意向",
        title_en: "Considering early mortgage repayment",
        lead_zh: "客户有提前偿还房贷的打算，需要测算利息节省。",
        lead_en: "The customer plans to repay the mortgage early and wants the interest saving worked out.",
        tag: "mortgage",
    },
    Topic {
        title_zh: "对手续费敏感",
        title_en: "Sensitive to fees",
        lead_zh: "客户多次询问年费和手续费，推荐免费产品效果更好。",
        lead_en: "The customer asked about annual and transfer fees several times; fee-free products land better.",
        tag: "credit-card",
    },
    Topic {
        title_zh: "小微企业流动资金需求",
        title_en: "Working capital for a small business",
        lead_zh: "企业旺季前需要短期流动资金贷款，账期约三个月。",
        lead_en: "The company needs a short working-capital loan before its peak season, about three months.",
        tag: "sme",
    },
    Topic {
        title_zh: "投诉处理经验：境外用卡",
        title_en: "Complaint lesson: cards blocked abroad",
        lead_zh: "出国前提醒客户开通境外交易，可以避免大部分拒付投诉。",
        lead_en: "Reminding customers to enable overseas payments before travel avoids most declined-card complaints.",
        tag: "overseas",
    },
    Topic {
        title_zh: "高净值客户沟通要点",
        title_en: "How to talk with high-net-worth clients",
        lead_zh: "高净值客户重视私密性和专属服务，沟通宜提前预约。",
        lead_en: "High-net-worth clients value privacy and dedicated service; book meetings in advance.",
        tag: "vip-candidate",
    },
];

pub const SENTENCES_ZH: &[&str] = &[
    "上次回访时客户表示满意。",
    "建议下次见面时介绍定期存款和货币基金的组合。",
    "客户的配偶也在本行开户，可以一起沟通家庭理财。",
    "客户更愿意在周末接听电话。",
    "客户对风险较高的基金产品兴趣不大。",
    "客户近期有大额资金到账，可能需要理财建议。",
    "客户曾因排队时间长投诉，安排预约服务效果较好。",
    "与客户沟通时使用简单明了的说明，避免专业术语。",
];

pub const SENTENCES_EN: &[&str] = &[
    "At the last follow-up the customer said they were satisfied.",
    "Next time, suggest a mix of time deposits and a money market fund.",
    "The customer's spouse also banks with us; family wealth planning can be discussed together.",
    "The customer prefers calls at the weekend.",
    "The customer shows little interest in higher-risk funds.",
    "A large deposit arrived recently; the customer may want advice on wealth products.",
    "The customer once complained about queues; booking appointments worked well.",
    "Explain in plain words and avoid jargon.",
];

/// Terms that occur in the generated knowledge, for searches.
pub const SEARCH_TERMS: &[&str] = &[
    "理财",
    "养老",
    "房贷",
    "手续费",
    "教育金",
    "流动资金",
    "境外",
    "retirement",
    "mortgage",
    "fees",
    "education",
    "working capital",
    "mobile app",
    "high-net-worth",
];
