//! The stage graph: cycle detection and a deterministic topological order.
//!
//! Nodes are indices; `edges[i]` lists the nodes that `i` runs after (its parents).

/// A cycle as `[a, b, …]` where `a` runs after `b`, …, and the last runs after `a`.
pub fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: usize,
        edges: &[Vec<usize>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[node] = Mark::Open;
        path.push(node);
        for &parent in &edges[node] {
            match marks[parent] {
                Mark::Open => {
                    let start = path.iter().position(|&n| n == parent).unwrap_or(0);
                    return Some(path[start..].to_vec());
                }
                Mark::New => {
                    if let Some(cycle) = visit(parent, edges, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[node] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; edges.len()];
    for node in 0..edges.len() {
        if marks[node] == Mark::New
            && let Some(cycle) = visit(node, edges, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

/// Topological order (parents first); among ready nodes the lowest index (file order) wins,
/// so the order is stable. `None` when there is a cycle.
pub fn topological(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut remaining: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut done = vec![false; edges.len()];
    let mut order = Vec::with_capacity(edges.len());
    while order.len() < edges.len() {
        let next = (0..edges.len()).find(|&n| !done[n] && remaining[n] == 0)?;
        done[next] = true;
        order.push(next);
        for (child, parents) in edges.iter().enumerate() {
            remaining[child] -= parents.iter().filter(|&&p| p == next).count();
        }
    }
    Some(order)
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
