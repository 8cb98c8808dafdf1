//! The stage graph: cycle detection and a deterministic topological order.
//!
//! Nodes are indices; `edges[i]` lists the nodes that `i` runs after (its parents).

/// A cycle as `[a, b, …]` where `a` runs after `b`, …, and the last runs after `a`.
///
/// Depth-first with an explicit stack: a chain of 50 000 stages would overflow the thread's
/// stack if each stage were a recursive call.
pub fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; edges.len()];
    // The open path: each node with the index of the next parent to look at.
    let mut path: Vec<(usize, usize)> = Vec::new();
    for root in 0..edges.len() {
        if marks[root] != Mark::New {
            continue;
        }
        marks[root] = Mark::Open;
        path.push((root, 0));
        while let Some((node, next)) = path.last_mut() {
            let node = *node;
            let Some(&parent) = edges[node].get(*next) else {
                marks[node] = Mark::Done;
                path.pop();
                continue;
            };
            *next += 1;
            match marks[parent] {
                Mark::Open => {
                    let start = path.iter().position(|&(n, _)| n == parent).unwrap_or(0);
                    return Some(path[start..].iter().map(|&(n, _)| n).collect());
                }
                Mark::New => {
                    marks[parent] = Mark::Open;
                    path.push((parent, 0));
                }
                Mark::Done => {}
            }
        }
    }
    None
}

/// Topological order (parents first); among ready nodes the lowest index (file order) wins,
/// so the order is stable. `None` when there is a cycle. O((nodes + edges) log nodes).
pub fn topological(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); edges.len()];
    for (child, parents) in edges.iter().enumerate() {
        for &parent in parents {
            children[parent].push(child);
        }
    }
    let mut remaining: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..edges.len())
        .filter(|&n| remaining[n] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(edges.len());
    while let Some(Reverse(next)) = ready.pop() {
        order.push(next);
        // A parent listed twice counts twice, as in `remaining`.
        for &child in &children[next] {
            remaining[child] -= 1;
            if remaining[child] == 0 {
                ready.push(Reverse(child));
            }
        }
    }
    (order.len() == edges.len()).then_some(order)
}

/// Depth of each node: 0 for roots, 1 + the deepest parent otherwise. Nodes of equal depth
/// can run in parallel; `check` prints them that way.
pub fn depths(edges: &[Vec<usize>]) -> Vec<usize> {
    let order = topological(edges).unwrap_or_else(|| (0..edges.len()).collect());
    let mut depth = vec![0; edges.len()];
    for node in order {
        depth[node] = edges[node].iter().map(|&p| depth[p] + 1).max().unwrap_or(0);
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cycles() {
        assert_eq!(find_cycle(&[vec![], vec![0], vec![1]]), None);
        assert_eq!(
            find_cycle(&[vec![2], vec![0], vec![1]]),
            Some(vec![0, 2, 1])
        );
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0]));
        assert_eq!(find_cycle(&[vec![], vec![0, 0], vec![1, 0]]), None);
    }

    #[test]
    fn long_chains_need_no_deep_stack() {
        // 0 ← 1 ← … ← n-1, and a cycle closing it.
        let n: usize = 200_000;
        let mut edges: Vec<Vec<usize>> = (0..n)
            .map(|i| i.checked_sub(1).into_iter().collect())
            .collect();
        assert_eq!(find_cycle(&edges), None);
        assert_eq!(depths(&edges)[n - 1], n - 1);
        edges[0].push(n - 1);
        assert_eq!(find_cycle(&edges).map(|c| c.len()), Some(n));
    }

    #[test]
    fn orders_parents_first_in_file_order() {
        // 0 ← 1, 0 ← 2, {1,2} ← 3
        let edges = vec![vec![], vec![0], vec![0], vec![1, 2]];
        assert_eq!(topological(&edges), Some(vec![0, 1, 2, 3]));
        assert_eq!(depths(&edges), vec![0, 1, 1, 2]);
        // A later stage may be a parent of an earlier one.
        assert_eq!(topological(&[vec![1], vec![]]), Some(vec![1, 0]));
        assert_eq!(topological(&[vec![1], vec![0]]), None);
    }
}
