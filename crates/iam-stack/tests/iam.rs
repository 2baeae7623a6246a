//! The IAM stack against the AWS emulator: create, no-op, policy versions, trust policy updates,
//! delete order, destroy, and input refused before any call. Each test runs in an account of its own;
//! calls are counted by the recording proxy.

use std::collections::BTreeMap;

use aws_sdk_iam::Client;
use iam_stack::policy::{PolicyDocument, Statement};
use iam_stack::resources::{ManagedPolicy, Role};
use iam_stack::{AssetsLocation, IamConfig, IamOutputs, IamStack, ServiceAccess};
use local_cloud::TestCloud;
use platform_core::{
    Engine, Error, MemoryStateStore, Scope, Stack, StackRef, resource::Registry, stack::Declared,
};

struct World {
    cloud: TestCloud,
    engine: Engine,
    iam: Client,
}

async fn world() -> World {
    world_with(|b| b).await
}

async fn world_with(
    customize: impl FnOnce(platform_core::EngineBuilder) -> platform_core::EngineBuilder,
) -> World {
    let cloud = TestCloud::start()
        .await
        .expect("an AWS emulator is required for this suite");
    let engine =
        customize(Engine::builder(MemoryStateStore::new()).aws(cloud.config.clone())).build();
    World {
        iam: Client::new(&cloud.config),
        cloud,
        engine,
    }
}

async fn trust_service(iam: &Client, role: &str) -> Vec<String> {
    let out = iam.get_role().role_name(role).send().await.unwrap();
    let doc = PolicyDocument::parse_aws(out.role().unwrap().assume_role_policy_document().unwrap())
        .unwrap();
    doc.statement
        .iter()
        .flat_map(|s| s.principal.clone().unwrap_or_default())
        .flat_map(|(_, v)| v.0)
        .collect()
}

async fn attached(iam: &Client, role: &str) -> Vec<String> {
    let out = iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap();
    out.attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_owned))
        .collect()
}

async fn default_document(iam: &Client, arn: &str) -> (String, PolicyDocument) {
    let p = iam.get_policy().policy_arn(arn).send().await.unwrap();
    let v = p.policy().unwrap().default_version_id().unwrap().to_owned();
    let doc = iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(&v)
        .send()
        .await
        .unwrap();
    let text = doc.policy_version().unwrap().document().unwrap();
    (v, PolicyDocument::parse_aws(text).unwrap())
}

async fn pinned_config(w: &World) -> IamConfig {
    IamConfig::default().bound_to(&w.engine.identity().await.unwrap())
}

#[tokio::test]
async fn the_seed_identity_is_created_and_a_second_apply_makes_no_mutating_call() {
    let w = world().await;
    let config = pinned_config(&w).await;
    let stack = IamStack::new(config.clone());
    let plan = w.engine.preview(&stack).await.unwrap();
    // 1 provider, 3 roles, 3 policies, 3 attachments, 1 instance profile.
    assert_eq!(plan.counts().create, 11, "{plan}");

    let iam: IamOutputs = w.engine.up(&stack).await.unwrap();
    let account = w.engine.identity().await.unwrap().account_id;
    assert_eq!(iam.account_id, account);
    assert_eq!(iam.region, "us-east-1");

    for (role, service, policy) in [
        (
            &iam.cluster_role,
            "ecs.amazonaws.com",
            &iam.cluster_policy_arn,
        ),
        (
            &iam.instance_role,
            "ec2.amazonaws.com",
            &iam.instance_policy_arn,
        ),
        (
            &iam.services["frontend"].role,
            "ecs-tasks.amazonaws.com",
            &iam.services["frontend"].policy_arn,
        ),
    ] {
        assert!(role.arn.contains(&account), "{role:?}");
        assert_eq!(trust_service(&w.iam, &role.name).await, [service]);
        assert_eq!(
            attached(&w.iam, &role.name).await,
            std::slice::from_ref(policy)
        );
    }
    let (_, frontend) = default_document(&w.iam, &iam.services["frontend"].policy_arn).await;
    assert_eq!(
        frontend,
        config
            .scope()
            .service_policy(config.service("frontend").unwrap())
    );
    assert!(frontend.to_json().contains(&format!(
        "arn:aws:logs:us-east-1:{account}:log-group:/ecs/frontend:*"
    )));
    let profile = w
        .iam
        .get_instance_profile()
        .instance_profile_name(&iam.instance_profile_name)
        .send()
        .await
        .unwrap();
    let roles: Vec<_> = profile
        .instance_profile()
        .unwrap()
        .roles()
        .iter()
        .map(|r| r.role_name().to_owned())
        .collect();
    assert_eq!(roles, std::slice::from_ref(&iam.instance_role.name));

    // Typed outputs are in the state store for other processes.
    let here = w.engine.identity().await.unwrap();
    let read = StackRef::<IamStack>::new("iam")
        .read(w.engine.store(), &here)
        .await
        .unwrap();
    assert_eq!(read.outputs, iam);
    assert_eq!(read.producer.stack, "iam");
    assert_eq!(read.producer.provider.as_ref(), Some(&here));

    // Again, with a live read of everything: AWS's URL-encoded, reordered documents compare equal.
    w.cloud.clear();
    let report = w
        .engine
        .up_with(
            &stack,
            platform_core::UpOptions::default().with_refresh(true),
        )
        .await
        .unwrap();
    assert!(!report.plan.has_changes(), "{}", report.plan);
    assert_eq!(w.cloud.mutating_calls(), Vec::<String>::new());
    assert_eq!(report.outputs, iam);
}

#[tokio::test]
async fn a_policy_change_makes_one_new_default_version_and_prunes_at_five() {
    let w = world().await;
    let base = pinned_config(&w).await;
    let iam = w.engine.up(&IamStack::new(base.clone())).await.unwrap();

    // Four changes: v2..v5, one CreatePolicyVersion each, nothing else.
    for i in 2..=5 {
        let config = with_assets(&base, &format!("release-{i}/"));
        let stack = IamStack::new(config.clone());
        let plan = w.engine.preview(&stack).await.unwrap();
        assert_eq!(
            (plan.counts().update, plan.counts().same),
            (1, 10),
            "{plan}"
        );
        assert_eq!(
            plan.step("frontend-policy").map(|s| s.action.kind()),
            Some(platform_core::plan::ActionKind::Update),
            "{plan}"
        );
        w.cloud.clear();
        w.engine.up(&stack).await.unwrap();
        assert_eq!(w.cloud.mutating_calls(), ["CreatePolicyVersion"]);
        let (version, doc) = default_document(&w.iam, &iam.services["frontend"].policy_arn).await;
        assert_eq!(version, format!("v{i}"));
        assert_eq!(
            doc,
            config
                .scope()
                .service_policy(config.service("frontend").unwrap())
        );
    }

    // The fifth change finds five versions: the oldest non-default one goes first.
    let config = with_assets(&base, "release-6/");
    w.cloud.clear();
    w.engine.up(&IamStack::new(config.clone())).await.unwrap();
    assert_eq!(
        w.cloud.mutating_calls(),
        ["DeletePolicyVersion", "CreatePolicyVersion"]
    );
    let versions = w
        .iam
        .list_policy_versions()
        .policy_arn(&iam.services["frontend"].policy_arn)
        .send()
        .await
        .unwrap();
    let mut ids: Vec<_> = versions
        .versions()
        .iter()
        .map(|v| (v.version_id().unwrap().to_owned(), v.is_default_version()))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            ("v2".to_owned(), false),
            ("v3".to_owned(), false),
            ("v4".to_owned(), false),
            ("v5".to_owned(), false),
            ("v6".to_owned(), true),
        ]
    );
    let (_, doc) = default_document(&w.iam, &iam.services["frontend"].policy_arn).await;
    assert!(doc.to_json().contains("release-6/"), "{}", doc.to_json());
}

/// A stack of the resources given, for tests of single resource kinds.
struct Custom {
    roles: Vec<Role>,
    policies: Vec<ManagedPolicy>,
}

impl Stack for Custom {
    type Outputs = ();
    fn name(&self) -> &str {
        "custom"
    }
    fn register(registry: &mut Registry) {
        IamStack::register(registry);
    }
    fn declare(&self, s: &mut Scope) -> Result<Declared<()>, Error> {
        for (i, r) in self.roles.iter().enumerate() {
            s.add(format!("role-{i}"), r.clone());
        }
        for (i, p) in self.policies.iter().enumerate() {
            s.add(format!("policy-{i}"), p.clone());
        }
        Ok(s.outputs(|_| Ok(())))
    }
}

#[tokio::test]
async fn a_trust_policy_change_is_one_update_call_and_a_rename_replaces() {
    let w = world().await;
    let role = Role::for_service("app-role", "ecs-tasks.amazonaws.com", "the app");
    let stack = |role: &Role| Custom {
        roles: vec![role.clone()],
        policies: vec![],
    };
    w.engine.up(&stack(&role)).await.unwrap();

    let mut changed = role.clone();
    changed.assume_role_policy = PolicyDocument::trust("lambda.amazonaws.com");
    w.cloud.clear();
    w.engine.up(&stack(&changed)).await.unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["UpdateAssumeRolePolicy"]);
    assert_eq!(
        trust_service(&w.iam, "app-role").await,
        ["lambda.amazonaws.com"]
    );

    let mut tagged = changed.clone();
    tagged.tags = BTreeMap::from([("team".to_owned(), "web".to_owned())]);
    tagged.description = "the app, tagged".into();
    w.cloud.clear();
    w.engine.up(&stack(&tagged)).await.unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["UpdateRole", "TagRole"]);

    // A tag replaced by another: the old key removed, the new one set, the engine's kept.
    let mut retagged = tagged.clone();
    retagged.tags = BTreeMap::from([("owner".to_owned(), "ops".to_owned())]);
    w.cloud.clear();
    w.engine.up(&stack(&retagged)).await.unwrap();
    assert_eq!(w.cloud.mutating_calls(), ["UntagRole", "TagRole"]);
    let live = w
        .iam
        .list_role_tags()
        .role_name("app-role")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = live.tags().iter().map(|t| t.key()).collect();
    assert!(
        keys.contains(&"owner") && !keys.contains(&"team"),
        "{keys:?}"
    );
    assert!(keys.contains(&"platform:stack"), "{keys:?}");
    let tagged = retagged;

    let mut renamed = tagged.clone();
    renamed.name = "app-role-2".into();
    let plan = w.engine.preview(&stack(&renamed)).await.unwrap();
    assert_eq!(plan.counts().replace, 1, "{plan}");
    w.engine.up(&stack(&renamed)).await.unwrap();
    assert!(w.iam.get_role().role_name("app-role").send().await.is_err());
    w.iam
        .get_role()
        .role_name("app-role-2")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_role_replaced_under_its_own_name_waits_while_iam_still_holds_the_name() {
    let w = world_with(|b| b.settle_window(std::time::Duration::from_secs(10))).await;
    let role = Role::for_service("held-role", "ecs-tasks.amazonaws.com", "the app");
    let stack = |role: &Role| Custom {
        roles: vec![role.clone()],
        policies: vec![],
    };
    w.engine.up(&stack(&role)).await.unwrap();
    // A new path replaces the role under the same name: deleted first, then created. IAM may
    // answer the create `EntityAlreadyExists` for a while after the delete (eventual consistency).
    let mut moved = role.clone();
    moved.path = "/team/".into();
    w.cloud.proxy.refuse_with(
        "CreateRole",
        local_cloud::Fault::AwsError {
            status: 409,
            code: "EntityAlreadyExists".into(),
            message: "Role with name held-role already exists.".into(),
        },
        std::time::Duration::from_secs(3),
    );
    w.cloud.clear();
    w.engine.up(&stack(&moved)).await.unwrap();
    let creates = w
        .cloud
        .mutating_calls()
        .iter()
        .filter(|c| *c == "CreateRole")
        .count();
    assert!(creates >= 2, "refused, then sent again: {creates}");
    let live = w
        .iam
        .get_role()
        .role_name("held-role")
        .send()
        .await
        .unwrap();
    assert_eq!(live.role().unwrap().path(), "/team/");
}

#[tokio::test]
async fn a_tag_change_is_converged_in_place_on_every_role_policy_and_profile() {
    let w = world().await;
    let config = pinned_config(&w).await.with_tag("team", "web");
    let iam = w.engine.up(&IamStack::new(config.clone())).await.unwrap();

    let mut retagged = config.clone();
    retagged.tags = BTreeMap::from([("owner".to_owned(), "ops".to_owned())]);
    w.cloud.clear();
    let plan = w
        .engine
        .preview(&IamStack::new(retagged.clone()))
        .await
        .unwrap();
    assert_eq!(plan.counts().replace, 0, "{plan}");
    w.engine.up(&IamStack::new(retagged)).await.unwrap();
    let mut calls = w.cloud.mutating_calls();
    calls.sort();
    assert_eq!(
        calls,
        [
            vec!["TagInstanceProfile"],
            vec!["TagPolicy"; 3],
            vec!["TagRole"; 3],
            vec!["UntagInstanceProfile"],
            vec!["UntagPolicy"; 3],
            vec!["UntagRole"; 3],
        ]
        .concat()
    );
    let keys = |tags: &[aws_sdk_iam::types::Tag]| -> Vec<String> {
        let mut k: Vec<String> = tags
            .iter()
            .map(|t| t.key().to_owned())
            .filter(|k| !k.starts_with("platform:"))
            .collect();
        k.sort();
        k
    };
    let policy = w
        .iam
        .list_policy_tags()
        .policy_arn(iam.services["frontend"].policy_arn.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(keys(policy.tags()), ["owner"]);
    // The profile's tags are not read back: moto answers ListInstanceProfileTags with a 500 (the
    // calls above are its check).
    let role = w
        .iam
        .list_role_tags()
        .role_name(&iam.services["frontend"].role.name)
        .send()
        .await
        .unwrap();
    assert_eq!(keys(role.tags()), ["owner"]);
}

#[tokio::test]
async fn destroy_detaches_what_was_added_by_hand_before_deleting_and_leaves_nothing() {
    // One IAM operation at a time, so that each resource's calls are contiguous in the record.
    let w = world_with(|b| b.service_limit("iam", 1)).await;
    let iam = w
        .engine
        .up(&IamStack::new(pinned_config(&w).await))
        .await
        .unwrap();

    // Out-of-band: an extra managed policy, an inline policy, and another instance profile.
    let extra = w
        .iam
        .create_policy()
        .policy_name("hand-made")
        .policy_document(
            PolicyDocument::new(vec![Statement::allow(
                "Read",
                ["s3:GetObject"],
                ["arn:aws:s3:::some-bucket/*"],
            )])
            .to_json(),
        )
        .send()
        .await
        .unwrap();
    let extra_arn = extra.policy().unwrap().arn().unwrap().to_owned();
    let frontend = iam.services["frontend"].role.name.clone();
    w.iam
        .attach_role_policy()
        .role_name(&frontend)
        .policy_arn(&extra_arn)
        .send()
        .await
        .unwrap();
    w.iam
        .put_role_policy()
        .role_name(&frontend)
        .policy_name("inline")
        .policy_document(
            PolicyDocument::new(vec![Statement::allow(
                "Read",
                ["s3:GetObject"],
                ["arn:aws:s3:::some-bucket/*"],
            )])
            .to_json(),
        )
        .send()
        .await
        .unwrap();
    w.iam
        .create_instance_profile()
        .instance_profile_name("hand-made-profile")
        .send()
        .await
        .unwrap();
    w.iam
        .add_role_to_instance_profile()
        .instance_profile_name("hand-made-profile")
        .role_name(&frontend)
        .send()
        .await
        .unwrap();

    w.cloud.clear();
    let report = w.engine.destroy::<IamStack>("iam").await.unwrap();
    assert_eq!(report.deleted, 11);
    let ops = w.cloud.mutating_calls();
    // Our order, whatever the emulator tolerates: the frontend role is emptied, then deleted.
    let frontend_delete = [
        "DetachRolePolicy",
        "DeleteRolePolicy",
        "RemoveRoleFromInstanceProfile",
        "DeleteRole",
    ];
    assert!(ops.windows(4).any(|w| w == frontend_delete), "{ops:?}");
    // The instance profile lets go of the instance role before it is deleted.
    assert!(
        ops.windows(2)
            .any(|w| w == ["RemoveRoleFromInstanceProfile", "DeleteInstanceProfile"]),
        "{ops:?}"
    );
    let count = |op: &str| ops.iter().filter(|o| *o == op).count();
    // Three attachments by the engine, the hand-made one by the role's delete.
    assert_eq!(count("DetachRolePolicy"), 4, "{ops:?}");
    assert_eq!(
        (count("DeleteRole"), count("DeletePolicy")),
        (3, 3),
        "{ops:?}"
    );

    let roles = w.iam.list_roles().send().await.unwrap();
    let names: Vec<_> = roles.roles().iter().map(|r| r.role_name()).collect();
    assert!(names.iter().all(|n| !n.starts_with("ecs-")), "{names:?}");
    let policies = w
        .iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .send()
        .await
        .unwrap();
    let names: Vec<_> = policies
        .policies()
        .iter()
        .filter_map(|p| p.policy_name())
        .collect();
    assert_eq!(names, ["hand-made"]);
    let profiles = w.iam.list_instance_profiles().send().await.unwrap();
    let names: Vec<_> = profiles
        .instance_profiles()
        .iter()
        .map(|p| p.instance_profile_name())
        .collect();
    assert_eq!(names, ["hand-made-profile"]);
}

#[tokio::test]
async fn invalid_input_is_refused_before_any_call() {
    let w = world().await;
    let good = ManagedPolicy {
        name: "p".into(),
        path: "/".into(),
        description: "d".into(),
        document: PolicyDocument::new(vec![Statement::allow(
            "Logs",
            ["logs:PutLogEvents"],
            ["arn:aws:logs:*:*:log-group:/ecs/frontend:*"],
        )]),
        tags: BTreeMap::new(),
    };
    let mut bad_arn = good.clone();
    bad_arn.document.statement[0].resource = ["logs:/ecs/frontend"].into();
    let mut no_action = good.clone();
    no_action.document.statement[0].action = Vec::<String>::new().into();
    let unknown_principal = Role::for_service("r", "ecs-task.amazonaws.com", "typo");

    let cases: [(Custom, &str); 3] = [
        (
            Custom {
                roles: vec![],
                policies: vec![bad_arn],
            },
            "invalid document.Statement[0].Resource[0] = logs:/ecs/frontend",
        ),
        (
            Custom {
                roles: vec![],
                policies: vec![no_action],
            },
            "invalid document.Statement[0].Action = []",
        ),
        (
            Custom {
                roles: vec![unknown_principal],
                policies: vec![],
            },
            "invalid assume_role_policy.Statement[0].Principal.Service = ecs-task.amazonaws.com",
        ),
    ];
    w.cloud.clear();
    for (stack, expected) in cases {
        let err = w.engine.up(&stack).await.unwrap_err();
        let text = format!(
            "{err}: {}",
            std::error::Error::source(&err)
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        assert!(text.contains(expected), "{text}");
        assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    }
    assert_eq!(w.cloud.operations(), Vec::<String>::new());
    // Nothing was recorded either.
    assert!(w.engine.store().read("custom").await.unwrap().is_none());
}

#[tokio::test]
async fn a_role_added_to_the_instance_profile_while_destroy_deletes_it_is_removed_again() {
    let w = world().await;
    let config = pinned_config(&w).await;
    let iam = w.engine.up(&IamStack::new(config)).await.unwrap();
    // Between destroy's removal of the role and its delete of the profile, the role is added back:
    // an `AddRoleToInstanceProfile` AWS carried out late, after its sender died.
    let (client, profile, role) = (
        w.iam.clone(),
        iam.instance_profile_name.clone(),
        iam.instance_role.name.clone(),
    );
    w.cloud.proxy.before_next("DeleteInstanceProfile", move || {
        Box::pin(async move {
            client
                .add_role_to_instance_profile()
                .instance_profile_name(profile)
                .role_name(role)
                .send()
                .await
                .unwrap();
        })
    });
    w.engine.destroy::<IamStack>("iam").await.unwrap();
    let left = w
        .iam
        .get_instance_profile()
        .instance_profile_name(&iam.instance_profile_name)
        .send()
        .await;
    assert!(left.is_err(), "the profile is left: {left:?}");
    let deletes = w
        .cloud
        .operations()
        .iter()
        .filter(|o| *o == "DeleteInstanceProfile")
        .count();
    assert_eq!(deletes, 2, "refused once (DeleteConflict), then done");
}

/// `config` with the frontend reading its assets under `prefix`.
fn with_assets(config: &IamConfig, prefix: &str) -> IamConfig {
    config.clone().with_services([ServiceAccess::frontend()
        .with_assets(Some(AssetsLocation::new("my-ecs-frontend-assets", prefix)))])
}
